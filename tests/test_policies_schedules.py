"""Pure math of the imitation heads: ACT's KL, diffusion schedules, DDIM timesteps and updates."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax.policies import diffusion
from vlajax.policies.act import gaussian_kl


def test_gaussian_kl_matches_hand_values():
  # Seed 001's worked example, one latent dimension per row, plus the prior itself.
  mu = jnp.array([[0.3], [-0.1], [0.0]])
  logvar = jnp.array([[-2.0], [-1.5], [0.0]])
  expected = [0.5 * (math.exp(-2.0) + 0.09 - 1.0 + 2.0), 0.5 * (math.exp(-1.5) + 0.01 - 1.0 + 1.5), 0.0]
  np.testing.assert_allclose(gaussian_kl(mu, logvar), expected, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(expected[:2], [0.6127, 0.3666], atol=1e-4)
  # Summed over latent dimensions, per example.
  kl = gaussian_kl(jnp.array([[0.3, -0.1], [0.0, 0.0]]), jnp.array([[-2.0, -1.5], [0.0, 0.0]]))
  assert kl.shape == (2,)
  np.testing.assert_allclose(kl, [expected[0] + expected[1], 0.0], rtol=1e-6, atol=1e-7)


def test_ddim_timesteps_leading_spacing():
  np.testing.assert_array_equal(diffusion.ddim_timesteps(100, 10), np.arange(90, -1, -10))
  np.testing.assert_array_equal(diffusion.ddim_timesteps(100, 16), np.arange(90, -1, -6))
  np.testing.assert_array_equal(diffusion.ddim_timesteps(100, 100), np.arange(99, -1, -1))
  with pytest.raises(ValueError, match="num_inference_steps"):
    diffusion.ddim_timesteps(100, 0)
  with pytest.raises(ValueError, match="num_inference_steps"):
    diffusion.ddim_timesteps(10, 11)


def test_squaredcos_cap_v2_betas():
  betas = diffusion.squaredcos_cap_v2_betas(100)
  alpha_bar = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
  assert betas.shape == (100,)
  assert betas[0] == pytest.approx(1 - alpha_bar(0.01) / alpha_bar(0.0), abs=1e-6)
  assert betas[0] == pytest.approx(6.3128e-4, abs=1e-7)
  assert np.all(np.diff(betas) > 0)
  assert np.all(betas <= 0.999) and betas[-1] == pytest.approx(0.999)
  abar = diffusion.alphas_cumprod(betas)
  assert abar[0] == pytest.approx(1 - betas[0])
  assert np.all(np.diff(abar) < 0) and abar[-1] < 1e-6


def test_linear_betas_and_named_schedules():
  betas = diffusion.linear_betas(1e-4, 0.02, 100)
  assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
  np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 99)
  np.testing.assert_allclose(diffusion.make_betas("linear", 100), betas)
  np.testing.assert_allclose(diffusion.make_betas("squaredcos_cap_v2", 100),
                             diffusion.squaredcos_cap_v2_betas(100))
  with pytest.raises(ValueError, match="beta_schedule"):
    diffusion.make_betas("cosine", 100)


def test_ddim_step_matches_worked_example():
  # Seed 001: abar_8 = 0.5, abar_7 = 0.6, a = [0.42, -0.31], eps = [0.15, -0.08] -> [0.439, -0.328].
  out = diffusion.ddim_step(jnp.array([0.42, -0.31]), jnp.array([0.15, -0.08]), 0.5, 0.6, None)
  np.testing.assert_allclose(out, [0.439, -0.328], atol=1.5e-3)
  # Clipping acts on the implied clean sample only.
  out = diffusion.ddim_step(jnp.array([3.0]), jnp.array([0.0]), 0.5, 1.0, 1.0)
  np.testing.assert_allclose(out, [1.0], atol=1e-6)


def test_add_noise_closed_form():
  a, eps = jnp.full((2, 3, 1), 2.0), jnp.full((2, 3, 1), -1.0)
  out = diffusion.add_noise(a, eps, jnp.array([1.0, 0.25]))
  np.testing.assert_allclose(out[0], 2.0)
  np.testing.assert_allclose(out[1], 0.5 * 2.0 - math.sqrt(0.75), rtol=1e-6)


@pytest.mark.parametrize("schedule,steps,clip", [("squaredcos_cap_v2", 16, 1.0),
                                                 ("squaredcos_cap_v2", 10, None),
                                                 ("linear", 16, None)])
def test_ddim_with_epsilon_oracle_recovers_x0(schedule, steps, clip):
  """With the exact noise for a known x0 at every level, every step predicts x0 and the last lands on it."""
  rng = np.random.default_rng(0)
  x0 = jnp.asarray(rng.uniform(-0.95, 0.95, size=(3, 8, 2)), jnp.float32)
  abar = diffusion.alphas_cumprod(diffusion.make_betas(schedule, 100))
  abar_j = jnp.asarray(abar, jnp.float32)
  calls = []

  def oracle(x, k):
    calls.append(k)
    a = abar_j[k][:, None, None]
    return (x - jnp.sqrt(a) * x0) / jnp.sqrt(1.0 - a)

  noise = jax.random.normal(jax.random.PRNGKey(0), x0.shape)
  out = diffusion.ddim_sample(oracle, noise, abar, steps, clip)
  np.testing.assert_allclose(out, x0, atol=1e-4)
  assert calls and calls[0].shape == (3,)   # traced once inside the scan, with (B,) steps


def test_ddim_sample_is_deterministic_given_noise():
  abar = diffusion.alphas_cumprod(diffusion.squaredcos_cap_v2_betas(100))
  eps_fn = lambda x, k: jnp.sin(x + k[:, None, None] / 100.0)
  noise = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 2))
  a = diffusion.ddim_sample(eps_fn, noise, abar, 16)
  b = diffusion.ddim_sample(eps_fn, noise, abar, 16)
  np.testing.assert_array_equal(a, b)
  assert bool(jnp.all(jnp.abs(a) <= 1.0 + 1e-6))   # last step: abar_prev = 1, output = clipped x0


def test_timestep_embedding():
  emb = diffusion.timestep_embedding(jnp.array([0, 5, 99]), 16)
  assert emb.shape == (3, 16)
  np.testing.assert_allclose(emb[0], [0.0] * 8 + [1.0] * 8, atol=1e-6)
  np.testing.assert_allclose(emb[1, 0], math.sin(5.0), atol=1e-6)   # first frequency is 1
  with pytest.raises(ValueError, match="even"):
    diffusion.timestep_embedding(jnp.zeros((1,)), 7)
