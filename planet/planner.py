"""Planning in latent space with the cross-entropy method, CEM (paper Sec. 2, Algorithm 2).

Letters: B envs planned for at once, J candidates, K top candidates, H horizon, A action dim.

For each env, a distribution over action sequences q(a_{t:t+H}) = Normal(mean, std) (the paper's
"belief over action sequences"; not the belief h_t) starts at N(0, I).
Each of I iterations:
  1. sample J candidate sequences from it and clip them to the action bounds [-1, 1];
  2. roll each candidate out in the model: one sampled latent trajectory from the current
     posterior (h_t, s_t), prior transitions only (no observations in the future);
  3. score a candidate by the sum of predicted mean rewards along the horizon;
  4. refit mean and std to the K best candidates (the true std, as in the official code;
     the paper's Algorithm 2 writes a mean absolute deviation).
The action taken is the mean's first step.

All B * J rollouts run as one batch per time step, and the reward model runs once over the
stacked horizon. Candidates are laid out env-major, (B, J), so candidate j of env b always
starts from env b's state (misaligning them is a known porting bug). The Gaussian noise of the
sampled latent states is drawn for the whole horizon at once (from `generator` when given), so
the rollout itself is a pure function that `machine.compile_planner` can hand to torch.compile.

Usage:
    planner = CEMPlanner(world_model.rssm, world_model.reward_model, action_size=A, config=cfg)
    action = planner(belief, state)   # (B, A), from posterior belief (B, 200), state (B, 30)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from planet.config import PlannerConfig
from planet.models.decoders import RewardModel
from planet.models.rssm import RSSM, features
from planet.utils import CompiledOrEager


class CEMPlanner:
    def __init__(
        self,
        rssm: RSSM,
        reward_model: RewardModel,
        action_size: int,
        config: PlannerConfig,
        autocast=None,
        log: Callable[[str], None] | None = None,
        compile: bool = False,
    ):
        self.rssm = rssm
        self.reward_model = reward_model
        self.action_size = action_size
        self.config = config
        self.autocast = autocast  # a context-manager factory (bf16 autocast) or None
        # `log` hears when the rollout compiles for a new batch shape (machine.compile_planner).
        # The rollout, torch.compile'd when `compile`: its ~15 small ops per step (GRU gates,
        # softplus, sampling, concat) fuse into a few kernels; the matrix products stay oneDNN's.
        self.imagine_features = (
            CompiledOrEager(self.rollout, "planner rollout", "machine.compile_planner", log)
            if compile else self.rollout
        )

    @torch.no_grad()
    def __call__(
        self, belief: torch.Tensor, state: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Plan for B envs at once: (B, belief), (B, state) -> first actions (B, A) in [-1, 1]."""
        if self.autocast is None:
            return self.plan(belief, state, generator)
        with self.autocast():
            return self.plan(belief, state, generator)

    def plan(self, belief, state, generator=None) -> torch.Tensor:
        horizon = self.config.horizon
        candidates = self.config.candidates
        top = self.config.top_candidates
        batch = belief.shape[0]
        device = belief.device
        # Each env's start state, repeated for its J candidates: (B * J, ·), env-major.
        start_belief = belief.float().repeat_interleave(candidates, dim=0)
        start_state = state.float().repeat_interleave(candidates, dim=0)
        mean = torch.zeros(horizon, batch, 1, self.action_size, device=device)  # (H, B, 1, A)
        stddev = torch.ones_like(mean)
        noise = torch.empty(horizon, batch, candidates, self.action_size, device=device)
        for _ in range(self.config.iterations):
            # 1. Sample J sequences per env and clip to the bounds: (H, B, J, A).
            noise.normal_(generator=generator)
            actions = (mean + stddev * noise).clamp_(-1.0, 1.0)
            # 2.-3. Roll out all B * J candidates and sum their predicted rewards.
            returns = self.evaluate(actions.flatten(1, 2), start_belief, start_state, generator)
            returns = returns.view(batch, candidates)  # (B, J)
            # 4. Refit to the top K per env: indices (B, K) -> actions (H, B, K, A).
            top_index = returns.topk(top, dim=1).indices
            gather_index = top_index[None, :, :, None].expand(horizon, -1, -1, self.action_size)
            best = actions.gather(2, gather_index)
            mean = best.mean(dim=2, keepdim=True)
            stddev = best.std(dim=2, unbiased=False, keepdim=True)
        return mean[0, :, 0]  # first step of the refit mean, (B, A)

    def evaluate(
        self, actions: torch.Tensor, belief: torch.Tensor, state: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sum of predicted mean rewards of each sequence: actions (H, N, A) -> returns (N,)."""
        horizon, count = actions.shape[:2]
        # One N(0, I) draw per step and candidate for s_t ~ p(s_t | h_t): (H, N, state).
        state_noise = torch.randn(
            horizon, count, state.shape[-1], device=state.device, generator=generator
        )
        imagined = self.imagine_features(actions, belief, state, state_noise)  # (H, N, F)
        return self.reward_model(imagined).float().sum(dim=0)  # reward head once, (N,)

    def rollout(
        self, actions: torch.Tensor, belief: torch.Tensor, state: torch.Tensor,
        state_noise: torch.Tensor,
    ) -> torch.Tensor:
        """Roll the prior forward under each action sequence: one sampled latent trajectory.

        actions (H, N, A), belief (N, belief), state (N, state), state_noise (H, N, state)
        -> features concat(h_t, s_t) of the H imagined steps, (H, N, belief + state).
        Here row tau of `actions` is a_{t+tau}, the action taken from imagined step tau; replay
        and RSSM.imagine store the other way round (row t holds a_{t-1}, the action into t).
        """
        imagined = []
        for t in range(actions.shape[0]):
            # h_{t+1} = f(h_t, s_t, a_t); s_{t+1} ~ p(s | h_{t+1}) with this step's noise.
            belief = self.rssm.transition(belief, state, actions[t])
            state = self.rssm.prior(belief).sample(state_noise[t])
            imagined.append(features(belief, state))
        return torch.stack(imagined)
