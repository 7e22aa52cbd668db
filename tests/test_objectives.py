import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from planet.models.rssm import RSSM, Gaussian
from planet.objectives import (
    Losses,
    gaussian_kl,
    kl_loss,
    overshooting_kl_loss,
    reconstruction_loss,
    reward_loss,
)


def on(device, gaussian: Gaussian) -> Gaussian:
    return Gaussian(gaussian.mean.to(device), gaussian.stddev.to(device))


def test_kl_matches_torch_distributions_and_its_direction_is_posterior_to_prior(device):
    torch.manual_seed(0)
    q = Gaussian(torch.randn(4, 30), torch.rand(4, 30) + 0.1)
    p = Gaussian(torch.randn(4, 30), torch.rand(4, 30) + 2.0)  # much wider: KL is asymmetric
    # The reference on the CPU; ours on the device under test.
    expected = kl_divergence(Normal(q.mean, q.stddev), Normal(p.mean, p.stddev)).sum(-1)
    reverse = kl_divergence(Normal(p.mean, p.stddev), Normal(q.mean, q.stddev)).sum(-1)
    assert torch.allclose(gaussian_kl(on(device, q), on(device, p)).cpu(), expected, atol=1e-5)
    assert (expected - reverse).abs().min() > 1.0  # so the direction is really tested


def test_kl_of_hand_set_gaussians(device):
    # KL(N(1, 1) || N(0, 2^2)) per dim = log 2 + (1 + 1) / 8 - 1/2.
    q = Gaussian(torch.ones(1, 30, device=device), torch.ones(1, 30, device=device))
    p = Gaussian(torch.zeros(1, 30, device=device), 2 * torch.ones(1, 30, device=device))
    per_dim = torch.log(torch.tensor(2.0)) + 2 / 8 - 0.5
    assert gaussian_kl(q, p).item() == pytest.approx(30 * per_dim.item(), rel=1e-5)


def _kl_with_total(total: float, device=None) -> tuple[Gaussian, Gaussian]:
    """Posterior and prior whose KL, summed over 30 dims, is `total`: m^2 / 2 per dim, m the same
    in every dim."""
    # KL(N(m, 1) || N(0, 1)) = m^2 / 2 per dim; spread the total over 30 dims.
    mean = torch.full((1, 30), (2 * total / 30) ** 0.5, requires_grad=True, device=device)
    ones = torch.ones(1, 30, device=device)
    return Gaussian(mean, ones), Gaussian(torch.zeros_like(ones), ones)


def test_free_nats_clamp_the_summed_kl(device):
    q, p = _kl_with_total(2.0, device)  # 2 nats in total, 0.067 per dim
    loss = kl_loss(q, p, free_nats=3.0)
    loss.backward()
    assert loss.item() == pytest.approx(3.0)
    assert q.mean.grad.abs().max() == 0  # below free nats: no gradient

    q, p = _kl_with_total(5.0, device)  # above 3 in total, though each dim (0.17) is below 3
    loss = kl_loss(q, p, free_nats=3.0)
    loss.backward()
    assert loss.item() == pytest.approx(5.0, rel=1e-5)
    # Clamping per dimension (the known bug) would give 30 * 3 = 90 and a zero gradient here.
    assert q.mean.grad.abs().min() > 0


def test_kl_is_averaged_over_time_and_batch(device):
    q = Gaussian(torch.zeros(2, 3, 30, device=device), torch.ones(2, 3, 30, device=device))
    p = Gaussian(torch.zeros(2, 3, 30, device=device), torch.ones(2, 3, 30, device=device))
    q.mean[0, 0] = (2 * 10.0 / 30) ** 0.5  # one element has KL 10, the rest 0 -> clamped to 3
    assert kl_loss(q, p, 3.0).item() == pytest.approx((10 + 5 * 3) / 6, rel=1e-5)


def test_reconstruction_and_reward_reductions(device):
    obs = torch.zeros(2, 3, 3, 4, 4, device=device)
    mean = torch.ones(2, 3, 3, 4, 4, device=device)
    # 0.5 * squared error summed over 48 pixel values, averaged over (T, B).
    assert reconstruction_loss(mean, obs).item() == pytest.approx(0.5 * 48)
    reward = torch.zeros(2, 3, device=device)
    assert reward_loss(torch.full((2, 3), 2.0, device=device), reward).item() == pytest.approx(
        0.5 * 4)


class AddActionRSSM(RSSM):
    """Mock transition: h' = h + s + a; prior mean = h', std 1 (so a sample, the mean, is h')."""

    def __init__(self):
        super().__init__(action_size=1, embedding_size=1, belief_size=1, state_size=1)

    def transition(self, belief, state, action):
        return belief + state + action

    def prior(self, belief):
        return Gaussian(belief, torch.ones_like(belief))


def test_overshooting_against_a_hand_worked_table(monkeypatch, device):
    """Distinct actions and start states, so that the action rows used (row t holds a_{t-1})
    and the start from the posterior sample s_t both show in the numbers."""
    monkeypatch.setattr(Gaussian, "sample", lambda self: self.mean)
    rssm = AddActionRSSM().to(device)
    column = lambda *values: torch.tensor(values, device=device).reshape(-1, 1, 1)  # noqa: E731
    beliefs, states = column(0.0, 0.0, 0.0, 0.0), column(0.5, 0.25, 0.0, 0.0)
    action = column(1.0, 2.0, 4.0, 8.0)  # a_{-1}, a_0, a_1, a_2
    posterior = Gaussian(column(0.0, 0.0, 0.0, 0.0), column(1.0, 1.0, 1.0, 1.0))
    # From t = 0: h1 = 0 + 0.5 + a_0 = 2.5, then s1 = h1; h2 = 2 h1 + a_1 = 9; h3 = 2 h2 + a_2 = 26.
    # From t = 1: h1 = 0.25 + a_1 = 4.25; h2 = 2 h1 + a_2 = 16.5. KL(N(0, 1) || N(m, 1)) = m^2 / 2
    # for the pairs with d >= 2: 40.5 (t=0, d=2), 338 (t=0, d=3), 136.125 (t=1, d=2).
    value = overshooting_kl_loss(rssm, beliefs, states, action, posterior, 3, 0.0)
    assert value.item() == pytest.approx((40.5 + 338 + 136.125) / 3)
    # Free nats clamp each (t, d) term on its own: 50 lifts only the first.
    value = overshooting_kl_loss(rssm, beliefs, states, action, posterior, 3, 50.0)
    assert value.item() == pytest.approx((50 + 338 + 136.125) / 3)


def test_overshooting_matches_a_slow_loop(device):
    torch.manual_seed(0)
    rssm = RSSM(action_size=2, embedding_size=8, belief_size=12, state_size=3, hidden_size=8)
    rssm = rssm.to(device)
    steps, batch, distance = 6, 2, 4
    beliefs = torch.randn(steps, batch, 12, device=device)
    states = torch.randn(steps, batch, 3, device=device)
    action = torch.randn(steps, batch, 2, device=device)
    posterior = Gaussian(torch.randn(steps, batch, 3, device=device),
                         torch.rand(steps, batch, 3, device=device) + 0.5)

    def mean_sample(self):
        return self.mean

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Gaussian, "sample", mean_sample)
        fast = overshooting_kl_loss(rssm, beliefs, states, action, posterior, distance, 1.0)
        terms = []
        for start in range(steps):
            belief, state = beliefs[start], states[start]
            for d in range(1, distance + 1):
                if start + d >= steps:
                    break
                belief = rssm.transition(belief, state, action[start + d])
                prior = rssm.prior(belief)
                state = prior.mean
                if d >= 2:
                    kl = gaussian_kl(posterior[start + d], prior)
                    terms.append(torch.clamp(kl, min=1.0))
        slow = torch.cat(terms).mean()
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5)


def test_learner_adds_the_scaled_overshooting_term_of_its_own_posterior_rollout(device):
    """Learner.compute_losses with overshooting on: the term is overshooting_kl_loss of the same
    posterior rollout with the config's distance and free nats, and enters the total with its
    scale; with overshooting off it is 0. An update with it is finite on the device."""
    import numpy as np

    from planet.bench import BenchPath, random_replay
    from planet.config import make_config

    # Free nats 0: an untrained model's KLs sit below the default 3 nats, and a term clamped
    # everywhere would equal 3 whatever it compared.
    config = make_config("smoke", {"train.overshooting": True, "train.overshooting_distance": 3,
                                   "train.overshooting_kl_scale": 2.0, "train.free_nats": 0.0})
    path = BenchPath(config, 1, device, None)
    chunks = random_replay(config, 1, seed=0).sample(
        config.train.batch_size, config.train.chunk_length, np.random.default_rng(0))
    obs, action, reward = path.learner.to_device(chunks)
    torch.manual_seed(0)
    losses = path.learner.compute_losses(obs, action, reward)
    torch.manual_seed(0)  # the same posterior samples, then the same prior samples
    with torch.no_grad(), path.autocast():
        rollout = path.model.observe(obs, action)
        direct = overshooting_kl_loss(path.model.rssm, rollout.beliefs, rollout.states, action,
                                      rollout.posterior, 3, config.train.free_nats)
    train = config.train
    assert losses.overshooting.item() == pytest.approx(direct.item(), rel=1e-4)
    assert losses.overshooting.item() > 0.01  # a real KL, not a clamp
    assert losses.total.item() == pytest.approx(
        (losses.reconstruction + train.reward_scale * losses.reward + losses.kl
         + 2.0 * losses.overshooting).item(), rel=1e-5)
    off = make_config("smoke")
    assert BenchPath(off, 1, device, None).learner.compute_losses(
        obs, action, reward).overshooting.item() == 0.0
    metrics = path.learner.update(chunks)
    assert metrics["skipped"] == 0.0 and metrics["overshooting"] > 0.01
    assert all(math.isfinite(value) for value in metrics.values())


def test_losses_as_floats_are_each_terms_value_with_the_extra_scalars_last():
    terms = {"total": 1.5, "reconstruction": 0.25, "reward": 1e-8, "kl": 3.0, "overshooting": 0.0}
    losses = Losses(**{name: torch.tensor(value, requires_grad=True) for name, value
                       in terms.items()})
    grad_norm = torch.tensor(123.456)
    floats = losses.as_floats(grad_norm=grad_norm)
    assert list(floats) == [*terms, "grad_norm"]
    assert floats == {**{name: float(torch.tensor(value)) for name, value in terms.items()},
                      "grad_norm": float(grad_norm)}
    assert all(type(value) is float for value in floats.values())
    assert losses.as_floats() == {name: float(torch.tensor(v)) for name, v in terms.items()}


def test_an_update_reports_the_unclipped_norm_and_steps_with_the_clipped_gradient(device):
    """Learner.update: Adam with the config's learning rate and eps; grad_norm is the norm
    before clipping; the step uses the gradient clipped to train.grad_clip_norm (Adam divides
    by the gradient's own scale, so a clip far below eps all but stops the step)."""
    import numpy as np

    from planet.bench import BenchPath, random_replay
    from planet.config import make_config

    def moved_after_one_update(clip: float) -> tuple[float, float, float]:
        config = make_config("smoke", {"train.learning_rate": 1e-3, "train.adam_eps": 1e-4,
                                       "train.grad_clip_norm": clip})
        torch.manual_seed(1)  # the same initial weights for both clips
        path = BenchPath(config, 1, device, None)
        (group,) = path.learner.optimizer.param_groups
        assert (group["lr"], group["eps"]) == (1e-3, 1e-4)
        chunks = random_replay(config, 1, seed=0).sample(
            config.train.batch_size, config.train.chunk_length, np.random.default_rng(0))
        torch.manual_seed(0)  # the dequantisation noise and the posterior samples
        path.learner.compute_losses(*path.learner.to_device(chunks)).total.backward()
        by_hand = torch.linalg.vector_norm(torch.stack(
            [p.grad.float().norm() for p in path.model.parameters() if p.grad is not None]))
        before = [p.detach().clone() for p in path.model.parameters()]
        torch.manual_seed(0)
        metrics = path.learner.update(chunks)
        moved = max((p.detach() - b).abs().max().item()
                    for p, b in zip(path.model.parameters(), before, strict=True))
        return metrics["grad_norm"], by_hand.item(), moved

    reported, by_hand, moved = moved_after_one_update(clip=1000.0)
    assert reported == pytest.approx(by_hand, rel=1e-4) and reported > 1e-3
    assert moved == pytest.approx(1e-3, rel=0.05)  # Adam's first step: lr per weight, at most
    reported_clipped, _, moved_clipped = moved_after_one_update(clip=1e-9)
    assert reported_clipped == pytest.approx(reported, rel=1e-4)  # reported before clipping
    assert moved_clipped < 1e-6
