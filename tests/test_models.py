import pytest
import torch

from planet.config import ModelConfig
from planet.models.decoders import ConvDecoder, RewardModel
from planet.models.encoder import ConvEncoder
from planet.models.rssm import RSSM, Gaussian
from planet.models.world_model import WorldModel


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])  # training's default
@pytest.mark.parametrize("steps,batch", [(1, 1), (7, 5)])
def test_encoder_decoder_reward_shapes(steps, batch, fast, device):
    torch.manual_seed(0)
    encoder, decoder, reward = ConvEncoder(1024), ConvDecoder(230, fast=fast), RewardModel(230)
    encoder, decoder, reward = encoder.to(device), decoder.to(device), reward.to(device)
    obs = torch.rand(steps, batch, 3, 64, 64, device=device) - 0.5
    embedding = encoder(obs)
    assert embedding.shape == (steps, batch, 1024) and embedding.dtype == torch.float32
    assert embedding.device.type == device.type
    features = torch.randn(steps, batch, 230, device=device)
    assert decoder(features).shape == (steps, batch, 3, 64, 64)
    assert reward(features).shape == (steps, batch)


@pytest.mark.parametrize("steps,batch", [(1, 1), (7, 5)])
def test_rssm_observe_and_imagine_shapes(steps, batch, device):
    torch.manual_seed(0)
    rssm = RSSM(action_size=2, embedding_size=16).to(device)
    belief, state = rssm.initial(batch)
    assert belief.device.type == device.type
    out = rssm.observe(torch.randn(steps, batch, 16, device=device),
                       torch.randn(steps, batch, 2, device=device), belief, state)
    assert out.beliefs.shape == (steps, batch, 200)
    assert out.states.shape == (steps, batch, 30)
    assert out.prior.mean.shape == out.posterior.mean.shape == (steps, batch, 30)
    assert out.features.shape == (steps, batch, 230)
    assert (out.prior.stddev >= 0.1).all() and (out.posterior.stddev >= 0.1).all()
    imagined = rssm.imagine(torch.randn(steps, batch, 2, device=device), out.beliefs[-1],
                            out.states[-1])
    assert imagined.beliefs.shape == (steps, batch, 200) and imagined.posterior is None


def test_belief_depends_on_previous_belief(device):
    """h_t = f(h_{t-1}, ...): a GRU called without its previous state would fail this."""
    torch.manual_seed(0)
    rssm = RSSM(action_size=1, embedding_size=8).to(device)
    state, action = torch.randn(3, 30, device=device), torch.randn(3, 1, device=device)
    belief = torch.randn(3, 200, device=device)
    first = rssm.transition(belief, state, action)
    second = rssm.transition(belief + 1.0, state, action)
    assert (first - second).abs().max() > 1e-3
    # ... and through a whole unroll: changing h_0 changes h_T.
    embedding, actions = torch.randn(5, 3, 8, device=device), torch.randn(5, 3, 1, device=device)
    torch.manual_seed(1)
    last_a = rssm.observe(embedding, actions, belief, state).beliefs[-1]
    torch.manual_seed(1)
    last_b = rssm.observe(embedding, actions, belief + 1.0, state).beliefs[-1]
    assert (last_a - last_b).abs().max() > 1e-4


def test_posterior_depends_on_embedding_and_prior_does_not(device):
    """Changing e_t changes q(s_t | h_t, e_t) but not p(s_t | h_t): the prior never sees o_t."""
    torch.manual_seed(0)
    rssm = RSSM(action_size=1, embedding_size=8).to(device)
    belief, state = rssm.initial(4)
    action = torch.randn(3, 4, 1, device=device)
    embedding = torch.randn(3, 4, 8, device=device)
    changed = embedding.clone()
    changed[-1] = torch.randn(4, 8, device=device)  # only the last step's e_t
    torch.manual_seed(1)
    a = rssm.observe(embedding, action, belief, state)
    torch.manual_seed(1)
    b = rssm.observe(changed, action, belief, state)
    # h_t depends on s_{t-1}, not on e_t: the last step's belief and prior are unchanged ...
    torch.testing.assert_close(b.beliefs, a.beliefs, rtol=0, atol=0)
    torch.testing.assert_close(b.prior.mean, a.prior.mean, rtol=0, atol=0)
    torch.testing.assert_close(b.prior.stddev, a.prior.stddev, rtol=0, atol=0)
    # ... while its posterior moves with the embedding.
    assert (b.posterior.mean[-1] - a.posterior.mean[-1]).abs().max() > 1e-3
    torch.testing.assert_close(b.posterior.mean[:-1], a.posterior.mean[:-1], rtol=0, atol=0)


def test_training_unroll_feeds_the_posterior_sample_forward(monkeypatch, device):
    """The state fed to step t + 1 (and to the decoders) is q's sample, not p's."""
    monkeypatch.setattr(Gaussian, "sample", lambda self: self.mean)  # deterministic samples
    torch.manual_seed(0)
    rssm = RSSM(action_size=1, embedding_size=8).to(device)
    belief, state = rssm.initial(2)
    embedding = 3 * torch.randn(4, 2, 8, device=device)
    action = torch.randn(4, 2, 1, device=device)
    out = rssm.observe(embedding, action, belief, state)
    assert torch.allclose(out.states, out.posterior.mean)
    assert (out.posterior.mean - out.prior.mean).abs().max() > 1e-2  # the test can tell them apart
    for t in range(1, 4):
        expected = rssm.transition(out.beliefs[t - 1], out.posterior.mean[t - 1], action[t])
        from_prior = rssm.transition(out.beliefs[t - 1], out.prior.mean[t - 1], action[t])
        assert torch.allclose(out.beliefs[t], expected, atol=1e-6)
        assert not torch.allclose(out.beliefs[t], from_prior, atol=1e-4)


def test_every_parameter_gets_a_finite_nonzero_gradient(device):
    torch.manual_seed(0)
    config = ModelConfig(belief_size=16, state_size=4, hidden_size=16, cnn_depth=4,
                         embedding_size=64, reward_hidden_size=8)
    model = WorldModel(config, action_size=2, obs_shape=(3, 64, 64)).to(device)
    obs = torch.rand(3, 2, 3, 64, 64, device=device) - 0.5
    embedding = model.encoder(obs)
    belief, state = model.rssm.initial(2)
    out = model.rssm.observe(embedding, torch.randn(3, 2, 2, device=device), belief, state)
    loss = model.decoder(out.features).square().mean() + model.reward_model(out.features).mean()
    loss = loss + out.prior.mean.square().mean()
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_world_model_rejects_wrong_image_size():
    with pytest.raises(ValueError, match="must be \\(3, 64, 64\\)"):
        WorldModel(ModelConfig(), action_size=1, obs_shape=(3, 32, 32))
