"""Diffusion Policy head (DDPM training, DDIM sampling, FiLM U-Net) on a tiny state dataset.

The image + history variant is in tests/test_policies_diffusion_images.py (kept apart for time).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import policies_testlib as lib
from vlajax.policies import heads
from vlajax.policies.diffusion import DiffusionPolicy


@pytest.fixture(scope="module")
def fitted():
  obs, actions = lib.dataset()
  head = heads.make_head("diffusion", lib.HORIZON, lib.ACTION_DIM, obs_width=128)   # channels (64, 128)
  params, losses = lib.fit(head, obs, actions, steps=300, lr=3e-3)
  return head, params, losses, obs, actions


def test_diffusion_overfits_state_dataset(fitted):
  head, params, losses, obs, actions = fitted
  first, last = lib.loss_drop(losses)
  assert last < 0.15 * first, (first, last)
  sampled = lib.jit_sample(head, params, obs)
  assert sampled.shape == (lib.BATCH, lib.HORIZON, lib.ACTION_DIM) and sampled.dtype == jnp.float32
  error = float(jnp.abs(sampled - actions).mean())
  assert error < 0.15, error


def test_diffusion_sampling_is_deterministic_given_noise(fitted):
  head, params, _, obs, _ = fitted
  sample = jax.jit(lambda p, noise: head.apply(p, obs, None, 10, noise,
                                               method=DiffusionPolicy.sample_actions))
  noise = jax.random.normal(jax.random.PRNGKey(7), (lib.BATCH, lib.HORIZON, lib.ACTION_DIM))
  a, b = sample(params, noise), sample(params, noise)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (lib.BATCH, lib.HORIZON, lib.ACTION_DIM)
  assert float(jnp.abs(a).max()) <= 1.0 + 1e-6     # clip_sample = 1 and the last abar_prev = 1
  c = sample(params, -noise)
  assert not np.allclose(a, c)


def test_diffusion_masked_targets_do_not_change_the_loss(fitted):
  head, params, _, obs, actions = fitted
  lib.check_mask_invariance(head, params, obs, actions)
