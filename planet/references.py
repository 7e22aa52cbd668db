"""Published returns on the six PlaNet tasks, with their sources: what our runs are compared to.

Every figure is a mean over seeds of the return of noise-free evaluation episodes, as the
source's table prints it. Env steps count action repeats (1000 env steps per episode).
"""

from __future__ import annotations

from dataclasses import dataclass

from planet.tasks import ACTION_REPEATS

TASKS = tuple(ACTION_REPEATS)  # the paper's six, in its order

# The step counts the paper's own learning curves are quoted at (planet_returns' "100k", "500k").
REFERENCE_STEPS = (100_000, 500_000)


def reference_steps_shown(max_steps: float) -> list[int]:
    """The published step counts a figure marks: those the runs have reached at least half of,
    so that a short run's axis is not stretched to a far-away marker."""
    return [steps for steps in REFERENCE_STEPS if max_steps >= steps / 2]


@dataclass(frozen=True)
class Reference:
    agent: str
    env_steps: int
    source: str
    returns: dict[str, float]  # task -> mean return

    @property
    def label(self) -> str:
        """'PlaNet (CURL)': the agent and, in short, who reported the figure."""
        return f"{self.agent} ({self.source.split(' ', 1)[0]})"


def _row(*values: float) -> dict[str, float]:
    return dict(zip(TASKS, values, strict=True))


CURL = "CURL (Srinivas et al., 2020), Table 1"
DRQ = "DrQ (Kostrikov et al., 2020), Table 1"
PLANET = "PlaNet (Hafner et al., 2019), Table 1"

#                                     cartpole reacher cheetah finger  cup  walker
REFERENCES = (
    Reference("PlaNet", 100_000, CURL, _row(297, 20, 138, 136, 0, 224)),
    Reference("PlaNet", 100_000, DRQ, _row(303, 140, 165, 95, 198, 125)),
    Reference("Dreamer", 100_000, CURL, _row(326, 314, 235, 341, 246, 277)),
    Reference("PlaNet", 500_000, CURL, _row(475, 210, 305, 561, 460, 351)),
    Reference("PlaNet", 500_000, DRQ, _row(464, 351, 321, 418, 352, 293)),
    Reference("Dreamer", 500_000, CURL, _row(762, 793, 570, 796, 879, 897)),
    # The paper's own table: after 1,000 episodes, i.e. 1M env steps.
    Reference("PlaNet", 1_000_000, PLANET, _row(821, 832, 662, 700, 930, 951)),
)


def references_at(env_steps: int) -> list[Reference]:
    """The published figures reported at exactly `env_steps`."""
    return [reference for reference in REFERENCES if reference.env_steps == env_steps]


def planet_returns(task: str) -> dict[str, float]:
    """PlaNet's own figures for a task: Table 1 (1M steps) and 100k / 500k (CURL), keyed
    'table1', '100k', '500k'; {} for a task outside the paper's six."""
    def find(steps: int, source: str) -> float | None:
        for reference in REFERENCES:
            key = (reference.agent, reference.env_steps, reference.source)
            if key == ("PlaNet", steps, source):
                return reference.returns.get(task)
        return None

    found = {"table1": find(1_000_000, PLANET), "100k": find(100_000, CURL),
             "500k": find(500_000, CURL)}
    return {key: value for key, value in found.items() if value is not None}

