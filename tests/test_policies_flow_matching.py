"""Flow-matching math and the language-free FlowMatchingPolicy head."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vlajax.policies import flow_matching as fm


def test_time_distribution_is_shifted_beta_1_5_1():
  t = np.asarray(fm.sample_time(jax.random.PRNGKey(0), 200_000))
  assert t.min() >= 0.001 and t.max() <= 1.0
  # Beta(1.5, 1): mean 0.6, P(t < 0.5) = 0.5 ** 1.5; shifted by t * 0.999 + 0.001.
  assert abs(t.mean() - (0.6 * 0.999 + 0.001)) < 3e-3
  assert abs(np.mean(t < 0.5 * 0.999 + 0.001) - 0.5 ** 1.5) < 5e-3


def test_interpolant_endpoints_and_target():
  actions = jnp.full((2, 3, 4), 0.5)
  noise = jnp.full((2, 3, 4), -1.0)
  np.testing.assert_allclose(fm.interpolate(actions, noise, jnp.array([1.0, 0.0])),
                             jnp.stack([noise[0], actions[1]]))
  np.testing.assert_allclose(fm.target_velocity(actions, noise), noise - actions)


def test_euler_sampling_is_exact_on_straight_paths():
  """With the true conditional velocity (noise - a, constant along the path) Euler lands on a."""
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.normal(size=(3, 5, 2)), jnp.float32)
  noise = jnp.asarray(rng.normal(size=(3, 5, 2)), jnp.float32)
  out = fm.euler_sample(lambda x, t: noise - a, noise, num_steps=10)
  np.testing.assert_allclose(out, a, atol=1e-5)
  # The marginal field of a single data point, v(x, t) = (x - a) / t, also integrates to a.
  out = fm.euler_sample(lambda x, t: (x - a) / t[:, None, None], noise, num_steps=10)
  np.testing.assert_allclose(out, a, atol=1e-5)


def test_masked_mse_ignores_padded_steps_and_dims():
  pred = jnp.zeros((2, 3, 2))
  target = jnp.ones((2, 3, 2)).at[:, 2].set(100.0).at[:, :, 1].set(-50.0)
  mask = jnp.ones((2, 3, 2)).at[:, 2].set(0.0).at[:, :, 1].set(0.0)
  loss, per_example = fm.masked_mse(pred, target, mask)
  assert float(loss) == pytest.approx(1.0)
  np.testing.assert_allclose(per_example, [1.0, 1.0])


def test_sincos_embedding_shape_and_range():
  emb = fm.sincos_time_embedding(jnp.array([0.0, 0.5, 1.0]), 16)
  assert emb.shape == (3, 16)
  np.testing.assert_allclose(emb[0], [0.0] * 8 + [1.0] * 8, atol=1e-6)
  with pytest.raises(ValueError, match="even"):
    fm.sincos_time_embedding(jnp.zeros((1,)), 7)


def test_flow_policy_without_language_model_fits_state_conditioned_chunks():
  """State -> action-chunk imitation: loss falls >= 10x and sampled chunks match the targets."""
  horizon, action_dim, n = 4, 2, 8
  rng = np.random.default_rng(0)
  states = rng.normal(size=(n, 3)).astype(np.float32)
  ramp = np.linspace(0.25, 1.0, horizon)[None, :, None]
  actions = np.tanh(ramp * (states @ rng.normal(size=(3, action_dim)))[:, None, :]).astype(np.float32)
  policy = fm.make_flow_policy(horizon, action_dim, width=64, depth=2)
  obs = {"state": jnp.asarray(states)}
  key = jax.random.PRNGKey(0)
  params = policy.init(key, obs, jnp.asarray(actions), key)
  tx = optax.adam(optax.cosine_decay_schedule(3e-3, 1500, 0.05))
  opt_state = tx.init(params)

  @jax.jit
  def train(params, opt_state, key):
    def step(carry, k):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(lambda p: policy.apply(p, obs, jnp.asarray(actions), k)[0])(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), jax.random.split(key, 1500))
    return params, opt_state, losses

  params, opt_state, losses = train(params, opt_state, jax.random.PRNGKey(1))
  first, last = float(losses[:20].mean()), float(losses[-100:].mean())
  assert last < first / 10, (first, last)
  sampled = policy.apply(params, obs, jax.random.PRNGKey(2), method=fm.FlowMatchingPolicy.sample_actions)
  assert sampled.shape == (n, horizon, action_dim)
  error = np.abs(np.asarray(sampled) - actions)
  assert error.mean() < 0.04 and error.max() < 0.15, (error.mean(), error.max())   # |actions| ~ 0.6


def test_observation_encoder_with_images_and_missing_keys():
  policy = fm.make_flow_policy(2, 3, width=16, depth=1, state_key="state", image_keys=("wrist",))
  obs = {"state": jnp.zeros((2, 4)), "wrist": jnp.zeros((2, 16, 16, 3))}
  key = jax.random.PRNGKey(0)
  params = policy.init(key, obs, jnp.zeros((2, 2, 3)), key)
  assert "image_wrist" in params["params"]["encoder"]
  out = policy.apply(params, obs, key, 3, method=fm.FlowMatchingPolicy.sample_actions)
  assert out.shape == (2, 2, 3)
  with pytest.raises(KeyError, match="wrist"):
    policy.apply(params, {"state": obs["state"]}, key, method=fm.FlowMatchingPolicy.sample_actions)
