"""ACT (CVAE + transformer) head: overfits tiny state and image datasets, masking, z = 0 inference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import policies_testlib as lib
from vlajax.policies import heads
from vlajax.policies.act import ACTPolicy, gaussian_kl

SMALL = dict(d_model=64, mlp_dim=128, num_heads=4, num_style_layers=1, num_encoder_layers=1,
             num_decoder_layers=1)


@pytest.fixture(scope="module")
def fitted():
  obs, actions = lib.dataset()
  head = heads.make_head("act", lib.HORIZON, lib.ACTION_DIM, **SMALL)
  params, losses = lib.fit(head, obs, actions, steps=300, lr=3e-3)
  return head, params, losses, obs, actions


def test_act_overfits_state_dataset(fitted):
  head, params, losses, obs, actions = fitted
  first, last = lib.loss_drop(losses)
  assert last < 0.1 * first, (first, last)
  sampled = lib.jit_sample(head, params, obs)
  assert sampled.shape == (lib.BATCH, lib.HORIZON, lib.ACTION_DIM) and sampled.dtype == jnp.float32
  error = float(jnp.abs(sampled - actions).mean())
  assert error < 0.08, error


def test_act_inference_is_deterministic_prior_mean(fitted):
  head, params, _, obs, _ = fitted
  a = lib.jit_sample(head, params, obs, seed=2)
  b = lib.jit_sample(head, params, obs, seed=3)
  np.testing.assert_array_equal(a, b)
  zeros = jnp.zeros((lib.BATCH, head.latent_dim))
  c = jax.jit(lambda p: head.apply(p, obs, None, zeros, method=ACTPolicy.sample_actions))(params)
  np.testing.assert_allclose(a, c, atol=1e-6)


def test_act_loss_is_l1_plus_weighted_kl(fitted):
  head, params, _, obs, actions = fitted
  key = jax.random.PRNGKey(4)

  @jax.jit
  def parts(p):
    mu, logvar = head.apply(p, obs, actions, method=ACTPolicy.posterior)
    z_rng = jax.random.split(key)[0]   # the draw compute_loss makes
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(z_rng, mu.shape)
    pred = head.apply(p, obs, z, method=ACTPolicy.decode)
    loss, per_example = head.apply(p, obs, actions, key)
    return mu, logvar, pred, loss, per_example

  mu, logvar, pred, loss, per_example = parts(params)
  assert mu.shape == logvar.shape == (lib.BATCH, 32) and pred.shape == actions.shape
  kl = gaussian_kl(mu, logvar)
  l1 = jnp.abs(pred - actions).mean((1, 2))
  np.testing.assert_allclose(per_example, l1 + 10.0 * kl, rtol=1e-5, atol=1e-6)
  assert float(loss) == pytest.approx(float(l1.mean() + 10.0 * kl.mean()), rel=1e-5)
  assert float(kl.mean()) > 0.0


def test_act_masked_targets_do_not_change_the_loss(fitted):
  head, params, _, obs, actions = fitted
  lib.check_mask_invariance(head, params, obs, actions)


def test_act_overfits_image_history_dataset():
  obs, actions = lib.dataset(images=True)
  head = heads.make_head("act", lib.HORIZON, lib.ACTION_DIM, image_keys=("image_primary",),
                         image_encoder="conv", image_channels=(16, 32), **SMALL)
  params, losses = lib.fit(head, obs, actions, steps=300, lr=3e-3)
  assert "image_tokens" in params["params"]
  first, last = lib.loss_drop(losses)
  assert last < 0.1 * first, (first, last)
  error = float(jnp.abs(lib.jit_sample(head, params, obs) - actions).mean())
  assert error < 0.08, error


def test_act_needs_some_observation():
  head = ACTPolicy(action_dim=2, action_horizon=4, state_key=None)
  with pytest.raises(ValueError, match="state_key"):
    head.init(jax.random.PRNGKey(0), {}, jnp.zeros((1, 4, 2)), jax.random.PRNGKey(0))
