"""The training objective: a variational bound (ELBO) on log p(o_{1:T}, r_{1:T} | a_{1:T}).

Paper Sec. 3 and 4 (equation numbers as in arXiv:1811.04551v5 and docs/theory.md):

    Eq. 3 (one-step bound), per time step t, to be maximised:
        E_q[ ln p(o_t | h_t, s_t) ]                    reconstruction   -> reconstruction_loss
      + E_q[ ln p(r_t | h_t, s_t) ]                    reward           -> reward_loss
      - max(free_nats, KL[q(s_t | h_t, o_t) || p(s_t | h_t)])   KL      -> kl_loss
    Eq. 7 (latent overshooting, optional): adds KL[q(s_t) || p(s_t | s_{t-d})] for d = 2..D,
      from multi-step prior rollouts started at posterior samples     -> overshooting_kl_loss

We minimise the negative. Reductions: log-likelihoods are summed over their feature dimensions
(pixels, reward) and averaged over time and batch; the KL is summed over the latent dimensions,
*then* clamped below at free nats, then averaged. (Clamping each dimension would give
30 x 3 = 90 free nats: a known bug.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from planet import fast_paths
from planet.models.rssm import RSSM, Gaussian


def gaussian_kl(q: Gaussian, p: Gaussian) -> torch.Tensor:
    """KL[q || p] of diagonal Gaussians, summed over the last (latent) dim: (..., S) -> (...).

    Closed form per dimension: log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2)
    / (2 sigma_p^2) - 1/2.
    """
    variance_ratio = (q.stddev / p.stddev) ** 2
    mean_term = ((q.mean - p.mean) / p.stddev) ** 2
    return 0.5 * (variance_ratio + mean_term - 1 - torch.log(variance_ratio)).sum(-1)


def kl_loss(posterior: Gaussian, prior: Gaussian, free_nats: float) -> torch.Tensor:
    """Eq. 3, KL term: mean over (T, B) of max(free_nats, KL[q(s_t|h_t,o_t) || p(s_t|h_t)]).

    The KL is summed over the latent dims before the clamp. Below free_nats the term is constant,
    so its gradient is zero: the model is not pushed to make posterior and prior closer than
    that. The official code clamps the same way (tf.maximum(free_nats, kl) in
    planet/training/utility.py); some ports subtract instead, max(0, KL - free_nats), which has
    the same gradient and a value lower by free_nats. We log the clamped value.
    """
    kl = gaussian_kl(posterior, prior)  # (T, B)
    return torch.clamp(kl, min=free_nats).mean()


def reconstruction_loss(obs_mean: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Eq. 3, -E[ln p(o_t | h_t, s_t)] for a unit-variance Gaussian, without its constant.

    0.5 * squared error summed over every pixel and channel (or state dim), mean over (T, B).
    obs_mean, obs: (T, B, 3, 64, 64) or (T, B, obs_size).
    """
    steps_times_batch = obs.shape[0] * obs.shape[1]
    # sum (mean - obs)^2 over everything, in float32; the fast form saves memory, not time.
    return 0.5 * fast_paths.squared_error_sum(obs_mean, obs) / steps_times_batch


def reward_loss(reward_mean: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """Eq. 3, -E[ln p(r_t | h_t, s_t)], unit-variance Gaussian without its constant, mean (T, B).
    Both (T, B): a (T, B, 1) reward would broadcast to (T, B, B) and give a wrong loss."""
    assert reward_mean.shape == reward.shape, (reward_mean.shape, reward.shape)
    return 0.5 * ((reward_mean.float() - reward) ** 2).mean()


def overshooting_kl_loss(
    rssm: RSSM,
    beliefs: torch.Tensor,
    states: torch.Tensor,
    action: torch.Tensor,
    posterior: Gaussian,
    distance: int,
    free_nats: float,
) -> torch.Tensor:
    """Eq. 7, latent overshooting: KL[q(s_{t+d}) || p(s_{t+d} | s_t)] for d = 2..D.

    From every posterior sample (h_t, s_t) the prior is rolled forward d steps with the real
    actions; the distribution it predicts for step t + d is pulled towards that step's posterior.
    The posterior is the target only (stop gradient), as in the official code. Each rollout
    starts from the posterior sample s_t: starting from a prior sample (a known porting bug)
    would make these ordinary open-loop rollouts from the chunk's start. All start times run as
    one batch; the batch shrinks by one start each step.

    Weighting differs from Eq. 7: this is the mean over all (t, d >= 2) pairs, so short
    distances, which have more start times in a chunk, count for more; Eq. 7 weights each d by
    beta_d / D (docs/theory.md, section 5; docs/choices.md).

    Args:
        beliefs, states: posterior rollout h_t, s_t, (T, B, belief_size) and
            (T, B, state_size).
        action: row t holds a_{t-1}, (T, B, A).
        posterior: q(s_t | h_t, o_t), (T, B, S).
    Returns:
        Mean over every (t, d >= 2) pair of the clamped summed KL; 0 if T < 3.
    """
    steps = beliefs.shape[0]
    distance = min(distance, steps - 1)
    if distance < 2:
        return beliefs.new_zeros(())
    target = posterior.detach()
    belief, state = beliefs, states  # starts at every t: (T, B, ·), flattened over (T, B) below
    total, count = beliefs.new_zeros(()), 0
    for d in range(1, distance + 1):
        # Eq. 5, the multi-step prior p(s_{t+d} | s_t): one more transition and prior step.
        # Predict step t + d from starts t = 0 .. T - 1 - d: keep the first T - d starts.
        belief = rssm.transition(
            belief[: steps - d].flatten(0, 1),
            state[: steps - d].flatten(0, 1),
            action[d:].flatten(0, 1),
        ).unflatten(0, (steps - d, -1))
        prior = rssm.prior(belief)
        state = prior.sample()
        if d >= 2:  # d = 1 is the one-step KL of Eq. 3, already in kl_loss
            kl = gaussian_kl(target[d:], prior)  # (T - d, B)
            total = total + torch.clamp(kl, min=free_nats).sum()
            count += kl.numel()
    return total / count


@dataclass
class Losses:
    """Terms of the negative ELBO (all scalars; `total` is what the optimiser minimises)."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    reward: torch.Tensor
    kl: torch.Tensor
    overshooting: torch.Tensor

    def as_floats(self, **more: torch.Tensor) -> dict[str, float]:
        """Each term (and each scalar in `more`) as a Python float, in one copy from the device:
        on a GPU, one synchronisation per update instead of one per number."""
        named = {**vars(self), **more}
        values = torch.stack([value.detach().float() for value in named.values()]).tolist()
        return dict(zip(named, values, strict=True))
