"""One gradient update of the world model on a batch of chunks (Algorithm 1, "model fitting").

uint8 frames travel to the device as uint8 and are turned into floats there. The loss is the
negative ELBO of `planet.objectives`, computed once per update, in float32, from products that
run in bf16 under autocast where the hardware is fast at it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from planet.config import TrainConfig
from planet.data.preprocess import to_model_input
from planet.data.replay import Chunks
from planet.models.world_model import WorldModel
from planet.objectives import (
    Losses,
    kl_loss,
    overshooting_kl_loss,
    reconstruction_loss,
    reward_loss,
)


class Learner:
    """Holds the optimiser; `update(chunks)` runs one step and returns the loss terms."""

    def __init__(self, model: WorldModel, config: TrainConfig, device: torch.device, autocast):
        self.model = model
        self.config = config
        self.device = device
        self.autocast = autocast
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.learning_rate, eps=config.adam_eps
        )
        self.nonfinite_updates = 0  # updates skipped because a loss or gradient was not finite
        self.nonfinite_in_a_row = 0

    def to_device(self, chunks: Chunks) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Chunks (T, B, ...) from replay -> (obs float, action, reward) on the device."""
        obs = torch.from_numpy(chunks.obs).to(self.device, non_blocking=True)
        obs = to_model_input(obs, self.config.bit_depth)  # (T, B, 3, 64, 64) in [-0.5, 0.5)
        action = torch.from_numpy(chunks.action).to(self.device)  # (T, B, A)
        reward = torch.from_numpy(chunks.reward).to(self.device)  # (T, B)
        return obs, action, reward

    def compute_losses(
        self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor
    ) -> Losses:
        """Negative ELBO of one batch; obs (T, B, ...), action (T, B, A), reward (T, B)."""
        model, config = self.model, self.config
        with self.autocast():
            # Posterior unroll: Eq. 2 in the RSSM form of Eq. 4.
            rollout = model.observe(obs, action)
            features = rollout.features  # (T, B, 230), posterior samples
            obs_mean = model.decoder(features)  # (T, B, 3, 64, 64) or (T, B, obs_size)
            reward_mean = model.reward_model(features)  # (T, B)
            overshooting = (
                overshooting_kl_loss(
                    model.rssm, rollout.beliefs, rollout.states, action, rollout.posterior,
                    config.overshooting_distance, config.free_nats,
                )
                if config.overshooting
                else obs.new_zeros(())
            )
        # Eq. 3 terms, in float32.
        reconstruction = reconstruction_loss(obs_mean, obs)
        reward_term = reward_loss(reward_mean, reward)
        kl = kl_loss(rollout.posterior, rollout.prior, config.free_nats)
        total = (
            reconstruction
            + config.reward_scale * reward_term
            + kl
            + config.overshooting_kl_scale * overshooting
        )
        return Losses(total, reconstruction, reward_term, kl, overshooting)

    def update(self, chunks: Chunks) -> dict[str, float]:
        """One gradient step on the negative ELBO of a batch of chunks.

        Returns the loss terms (total, reconstruction, reward, kl, overshooting), the gradient
        norm before clipping, and skipped: 1.0 when a non-finite loss or gradient left the
        weights untouched, else 0.0.
        """
        # Nothing keeps the float frames past the forward pass but the first conv, which saves
        # its input for its weight gradient (the loss keeps only its residual). Under bf16
        # autocast that input is a bf16 copy, so the float32 frames (123 MB at the paper's
        # batch) are freed before the backward pass; in float32 the conv keeps them.
        losses = self.compute_losses(*self.to_device(chunks))
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.config.grad_clip_norm
        )
        metrics = losses.as_floats(grad_norm=grad_norm)
        if not (math.isfinite(metrics["total"]) and math.isfinite(metrics["grad_norm"])):
            # Skip this update: a single bad batch must not poison the weights.
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_updates += 1
            self.nonfinite_in_a_row += 1
            metrics["skipped"] = 1.0
            return metrics
        self.nonfinite_in_a_row = 0
        self.optimizer.step()
        metrics["skipped"] = 0.0
        return metrics


def mean_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """Average each metric over the updates of one collect interval (finite values only)."""
    if not history:
        return {}
    keys = history[0].keys()
    means = {}
    for key in keys:
        values = np.array([entry[key] for entry in history], dtype=np.float64)
        finite = values[np.isfinite(values)]
        means[key] = float(finite.mean()) if len(finite) else float("nan")
    return means
