import torch
from torch import nn

from planet.config import PlannerConfig
from planet.models.rssm import Gaussian
from planet.planner import CEMPlanner

ACTION_SIZE = 2


class TargetRSSM(nn.Module):
    """Mock model: belief = [target (A), last action (A)]; the target rides along unchanged."""

    def transition(self, belief, state, action):
        return torch.cat([belief[..., :ACTION_SIZE], action], dim=-1)

    def prior(self, belief):
        zeros = belief.new_zeros(*belief.shape[:-1], 1)
        return Gaussian(zeros, zeros)  # zero std: the sample is the mean


class QuadraticReward(nn.Module):
    """r_t = -||a_t - target||^2, read from features = [belief, state]."""

    def forward(self, features):
        target, action = features[..., :ACTION_SIZE], features[..., ACTION_SIZE : 2 * ACTION_SIZE]
        return -((action - target) ** 2).sum(-1)


def make_planner(**overrides):
    config = PlannerConfig(horizon=5, iterations=8, candidates=400, top_candidates=40)
    for key, value in overrides.items():
        setattr(config, key, value)
    return CEMPlanner(TargetRSSM(), QuadraticReward(), ACTION_SIZE, config)


def start(targets, device):
    targets = torch.tensor(targets, dtype=torch.float32, device=device)
    belief = torch.cat([targets, torch.zeros_like(targets)], dim=-1)
    return belief, torch.zeros(len(targets), 1, device=device)


def seeded(device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def test_cem_finds_the_maximiser_of_a_quadratic(device):
    belief, state = start([[0.3, -0.6]], device)
    action = make_planner()(belief, state, seeded(device, 0))
    assert action.shape == (1, ACTION_SIZE) and action.device.type == device.type
    assert torch.allclose(action.cpu(), torch.tensor([[0.3, -0.6]]), atol=0.05)


def test_candidates_stay_aligned_with_their_env(device):
    """Each env has its own target in its belief; a misaligned layout mixes them up."""
    targets = [[0.5, 0.5], [-0.5, 0.2], [0.0, -0.7], [0.8, -0.1]]
    belief, state = start(targets, device)
    action = make_planner()(belief, state, seeded(device, 1))
    assert action.shape == (4, ACTION_SIZE)
    assert torch.allclose(action.cpu(), torch.tensor(targets), atol=0.06)


def test_actions_stay_within_bounds(device):
    belief, state = start([[3.0, -3.0]], device)  # the maximiser lies outside [-1, 1]
    action = make_planner()(belief, state, seeded(device, 2))
    assert action.abs().max() <= 1.0
    assert torch.allclose(action.cpu(), torch.tensor([[1.0, -1.0]]), atol=0.05)


class CountingRSSM(nn.Module):
    """Mock model: belief = [target (A), last action (A), steps taken (1)]."""

    def transition(self, belief, state, action):
        steps = belief[..., -1:] + 1
        return torch.cat([belief[..., :ACTION_SIZE], action, steps], dim=-1)

    def prior(self, belief):
        zeros = belief.new_zeros(*belief.shape[:-1], 1)
        return Gaussian(zeros, zeros)


class FirstStepReward(nn.Module):
    """r_t = -||a_t - target||^2 at the first step, -||a_t + target||^2 at every later one."""

    def forward(self, features):
        target = features[..., :ACTION_SIZE]
        action = features[..., ACTION_SIZE : 2 * ACTION_SIZE]
        sign = torch.where(features[..., 2 * ACTION_SIZE : 2 * ACTION_SIZE + 1] == 1, 1.0, -1.0)
        return -((action - sign * target) ** 2).sum(-1)


def test_the_planner_returns_the_first_step_of_its_plan(device):
    # The best plan is the target now and its negation after: returning the last step or the
    # plan's mean over steps gives -target or -0.6 target instead.
    config = PlannerConfig(horizon=5, iterations=8, candidates=400, top_candidates=40)
    planner = CEMPlanner(CountingRSSM(), FirstStepReward(), ACTION_SIZE, config)
    targets = torch.tensor([[0.3, -0.6]], device=device)
    belief = torch.cat([targets, torch.zeros_like(targets), torch.zeros(1, 1, device=device)], -1)
    action = planner(belief, torch.zeros(1, 1, device=device), seeded(device, 5))
    assert torch.allclose(action.cpu(), torch.tensor([[0.3, -0.6]]), atol=0.05)


def test_same_seed_same_plan_and_a_batch_plans_like_single_envs_within_cem_noise(device):
    belief, state = start([[0.1, 0.2], [-0.3, 0.4]], device)
    planner = make_planner(iterations=3)
    first = planner(belief, state, seeded(device, 3))
    again = planner(belief, state, seeded(device, 3))
    assert torch.equal(first, again)
    for index in range(2):
        single = planner(belief[index : index + 1], state[index : index + 1], seeded(device, 4))
        assert torch.allclose(single[0], first[index], atol=0.15)


def test_smallest_settings_still_plan_and_mean_what_they_say():
    """Horizon 1, one iteration, and refits on one candidate (K = 1: the std over one sample
    is 0, not NaN) or on all of them (K = J)."""
    target = torch.tensor([[0.3, -0.2]])
    belief, state = start(target.tolist(), "cpu")

    def plan(**overrides) -> torch.Tensor:
        action = make_planner(**overrides)(belief, state, seeded("cpu", 0))
        assert action.shape == (1, ACTION_SIZE), overrides
        assert torch.isfinite(action).all() and action.abs().max() <= 1, overrides
        return action

    # One step to plan: the quadratic's maximiser, the target itself.
    assert torch.allclose(plan(horizon=1), target, atol=0.01)
    # One refit to the best 40 of 400 sequences already moves the mean towards the target.
    assert (plan(iterations=1) - target).norm() < target.norm()
    # K = 1: the mean jumps to the best first sample and the std to 0, so later iterations
    # sample only that sequence: the plan is the first iteration's.
    assert torch.equal(plan(top_candidates=1), plan(top_candidates=1, iterations=1))
    # K = J: each refit is the sample mean of all candidates, which stays near the start (0).
    assert plan(top_candidates=400).norm() < 0.2
