"""The paper's tasks and their action repeats: plain data, importable without gymnasium.

planet.envs re-exports the table (planet.envs.dmc.ACTION_REPEATS); `planet bench` reads it from
here, so that a machine with PyTorch alone (a GPU loan) can time the model figures.
"""

# The paper's action repeats (some ports use 6 for ball_in_cup; the paper and its code use 4).
ACTION_REPEATS = {
    "cartpole-swingup": 8,
    "reacher-easy": 4,
    "cheetah-run": 4,
    "finger-spin": 2,
    "ball_in_cup-catch": 4,
    "walker-walk": 2,
}
