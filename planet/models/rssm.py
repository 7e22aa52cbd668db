"""Recurrent state-space model, RSSM (paper Sec. 3, Eq. 4, Fig. 2c).

The latent state at time t has two parts: a deterministic `belief` h_t (GRU state, 200 units) and a
stochastic `state` s_t (30-d diagonal Gaussian).

    deterministic state model   h_t = f(h_{t-1}, s_{t-1}, a_{t-1})        f: dense + GRU cell
    stochastic state model      s_t ~ p(s_t | h_t)                          the prior
    posterior (filtering)       s_t ~ q(s_t | h_t, e_t),  e_t = enc(o_t)    the posterior

Graphical model, one step (solid: deterministic, dotted: sampled):

          a_{t-1}
             |
    h_{t-1} -+-> [dense(s_{t-1}, a_{t-1}) -> GRU] --> h_t --> p(s_t|h_t) ..> s_t (imagination)
    s_{t-1} -'                                          |
                                            o_t -> e_t -+-> q(s_t|h_t,e_t) ..> s_t (training)

Time alignment (same as planet.data.replay): step t reads `action[t]` = a_{t-1}, the action that
led to o_t, and `obs[t]` = o_t. Shapes: T time, B batch, A action dim, E embedding.

Usage:
    rssm = RSSM(action_size=1)
    belief, state = rssm.initial(batch_size=B)
    out = rssm.observe(embedding, action, belief, state)    # (T, B, ...) each; posterior samples
    imagined = rssm.imagine(action, out.beliefs[-1], out.states[-1])  # prior rollout
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from planet import fast_paths
from planet.models.layers import activation_layer


@dataclass
class Gaussian:
    """A diagonal Gaussian given by its mean and stddev, both (..., state_size)."""

    mean: torch.Tensor
    stddev: torch.Tensor

    def sample(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """mean + stddev * noise, noise ~ N(0, I) drawn here unless given (same shape as mean).

        Reparameterised: gradients flow into mean and stddev.
        """
        if noise is None:
            noise = torch.randn_like(self.mean)
        return self.mean + self.stddev * noise

    def __getitem__(self, index) -> Gaussian:
        return Gaussian(self.mean[index], self.stddev[index])

    def detach(self) -> Gaussian:
        return Gaussian(self.mean.detach(), self.stddev.detach())

    @staticmethod
    def stack(steps: list[Gaussian]) -> Gaussian:
        """One Gaussian per time step, (B, S) each -> one over the sequence, (T, B, S)."""
        return Gaussian(torch.stack([step.mean for step in steps]),
                        torch.stack([step.stddev for step in steps]))


def features(belief: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """concat(h_t, s_t), what the decoders and the reward model read: (..., belief + state)."""
    return torch.cat([belief, state], dim=-1)


@dataclass
class Rollout:
    """Output of observe() or imagine(): every field is time-major (T, B, ...)."""

    beliefs: torch.Tensor  # h_t, (T, B, belief_size)
    states: torch.Tensor  # s_t samples, (T, B, state_size): posterior (observe) or prior (imagine)
    prior: Gaussian  # p(s_t | h_t), (T, B, state_size)
    posterior: Gaussian | None  # q(s_t | h_t, e_t), (T, B, state_size); None in imagine()

    @property
    def features(self) -> torch.Tensor:
        """concat(h_t, s_t), the input of the decoders, (T, B, belief_size + state_size)."""
        return features(self.beliefs, self.states)


class GRUCell(nn.Module):
    """A GRU cell written with two dense layers, so that autocast runs its products in bf16.

    r = sigmoid(W_r x + U_r h), z = sigmoid(W_z x + U_z h), n = tanh(W_n x + r * (U_n h)),
    h' = (1 - z) * n + z * h. The gates are computed in float32 from the products' outputs; the
    tanh is `planet.fast_paths.tanh`, the same function in a form that is faster on CPU.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_gates = nn.Linear(input_size, 3 * hidden_size)
        self.hidden_gates = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        gates_x = self.input_gates(inputs).float().chunk(3, dim=-1)
        gates_h = self.hidden_gates(hidden).float().chunk(3, dim=-1)
        reset = torch.sigmoid(gates_x[0] + gates_h[0])
        update = torch.sigmoid(gates_x[1] + gates_h[1])
        candidate = fast_paths.tanh(gates_x[2] + reset * gates_h[2])
        return (1 - update) * candidate + update * hidden.float()


class RSSM(nn.Module):
    def __init__(
        self,
        action_size: int,
        embedding_size: int = 1024,
        belief_size: int = 200,
        state_size: int = 30,
        hidden_size: int = 200,
        min_stddev: float = 0.1,
        activation: str = "relu",
    ):
        super().__init__()
        self.belief_size = belief_size
        self.state_size = state_size
        self.min_stddev = min_stddev
        # --- deterministic state model h_t = f(h_{t-1}, s_{t-1}, a_{t-1}) ---
        self.state_action_layer = nn.Sequential(
            nn.Linear(state_size + action_size, hidden_size), activation_layer(activation)
        )
        self.gru = GRUCell(hidden_size, belief_size)
        # --- prior p(s_t | h_t) ---
        self.prior_net = nn.Sequential(
            nn.Linear(belief_size, hidden_size), activation_layer(activation),
            nn.Linear(hidden_size, 2 * state_size),
        )
        # --- posterior q(s_t | h_t, e_t) ---
        self.posterior_net = nn.Sequential(
            nn.Linear(belief_size + embedding_size, hidden_size), activation_layer(activation),
            nn.Linear(hidden_size, 2 * state_size),
        )

    @property
    def features_size(self) -> int:
        return self.belief_size + self.state_size

    def initial(self, batch_size: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero belief h_0 and state s_0 before the first observation, (B, ·) each."""
        device = device or next(self.parameters()).device
        return (
            torch.zeros(batch_size, self.belief_size, device=device),
            torch.zeros(batch_size, self.state_size, device=device),
        )

    def _gaussian(self, params: torch.Tensor) -> Gaussian:
        mean, raw_stddev = params.float().chunk(2, dim=-1)
        # std = softplus(x) + min_stddev keeps the std away from 0 (paper: 0.1). The chunk is a
        # strided view; softplus on CPU is ~9x faster on a contiguous copy (planner profile).
        return Gaussian(mean, F.softplus(raw_stddev.contiguous()) + self.min_stddev)

    def transition(
        self, belief: torch.Tensor, state: torch.Tensor, action: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 4, deterministic part: h_t = GRU(h_{t-1}, dense(s_{t-1}, a_{t-1})), (B, belief)."""
        hidden = self.state_action_layer(torch.cat([state, action], dim=-1))
        return self.gru(hidden, belief)

    def prior(self, belief: torch.Tensor) -> Gaussian:
        """Eq. 4, stochastic part: p(s_t | h_t). Works on any leading shape."""
        return self._gaussian(self.prior_net(belief))

    def posterior(self, belief: torch.Tensor, embedding: torch.Tensor) -> Gaussian:
        """Eq. 2 in the RSSM form of Eq. 4, filtering: q(s_t | h_t, e_t). Works on any leading
        shape."""
        return self._gaussian(self.posterior_net(torch.cat([belief, embedding], dim=-1)))

    def observe_step(
        self, belief: torch.Tensor, state: torch.Tensor, action: torch.Tensor,
        embedding: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, Gaussian]:
        """One filtering step: (h_{t-1}, s_{t-1}, a_{t-1}, e_t) -> (h_t, s_t ~ q, q)."""
        belief = self.transition(belief, state, action)
        posterior = self.posterior(belief, embedding)
        return belief, posterior.sample(), posterior

    def observe(
        self,
        embedding: torch.Tensor,
        action: torch.Tensor,
        belief: torch.Tensor,
        state: torch.Tensor,
    ) -> Rollout:
        """Filter a sequence with the posterior (training and acting).

        Args:
            embedding: e_t, (T, B, E).
            action: a_{t-1} for each t, (T, B, A) (row t of the replay).
            belief, state: h and s before the first step, (B, ·).
        Returns:
            A Rollout whose `states` are *posterior* samples: the sample fed forward to the next
            step, decoded and scored is the posterior's (feeding the prior's is a known bug).
        """
        assert embedding.shape[:2] == action.shape[:2], (embedding.shape, action.shape)
        beliefs, states, posteriors = [], [], []
        for t in range(embedding.shape[0]):  # only the recurrence runs step by step
            belief, state, posterior = self.observe_step(belief, state, action[t], embedding[t])
            beliefs.append(belief)
            states.append(state)
            posteriors.append(posterior)
        all_beliefs = torch.stack(beliefs)  # (T, B, belief)
        # The prior needs no step-by-step loop: one batched pass over all (T, B) beliefs.
        return Rollout(
            beliefs=all_beliefs,
            states=torch.stack(states),
            prior=self.prior(all_beliefs),
            posterior=Gaussian.stack(posteriors),
        )

    def imagine(self, action: torch.Tensor, belief: torch.Tensor, state: torch.Tensor) -> Rollout:
        """Roll the prior forward open loop: s_t ~ p(s_t | h_t), h_{t+1} = f(h_t, s_t, a_t).

        Args:
            action: actions a_{t-1} for the T steps to imagine, (T, B, A).
            belief, state: h and s of the step before the first imagined one, (B, ·).
        """
        beliefs, states, priors = [], [], []
        for t in range(action.shape[0]):
            belief = self.transition(belief, state, action[t])
            prior = self.prior(belief)
            state = prior.sample()
            beliefs.append(belief)
            states.append(state)
            priors.append(prior)
        return Rollout(
            beliefs=torch.stack(beliefs),
            states=torch.stack(states),
            prior=Gaussian.stack(priors),
            posterior=None,
        )
