"""Observation normalizer: parallel-variance statistics, normalization with and without clipping."""
import jax.numpy as jnp
import numpy as np

from vlajax.rl import running_stats


def _stats():
  stats = running_stats.init({"state": (2,)})
  batch = {"state": jnp.asarray(np.random.default_rng(0).normal(size=(512, 2)), jnp.float32)}
  return running_stats.update(stats, batch), batch


def test_update_matches_numpy_moments():
  stats, batch = _stats()
  np.testing.assert_allclose(stats.mean["state"], np.mean(batch["state"], 0), atol=1e-5)
  np.testing.assert_allclose(stats.var["state"], np.var(batch["state"], 0), rtol=1e-3)


def test_clip_at_ten_by_default_and_off_at_zero_or_none():
  stats, _ = _stats()
  far = {"state": stats.mean["state"] + 50.0 * jnp.sqrt(stats.var["state"])}
  np.testing.assert_allclose(running_stats.normalize(stats, far)["state"], 10.0, atol=1e-3)
  for clip in (0.0, None):
    np.testing.assert_allclose(running_stats.normalize(stats, far, clip=clip)["state"], 50.0,
                               rtol=1e-3)
  passthrough = {"state": far["state"], "other": jnp.ones(3)}
  assert running_stats.normalize(stats, passthrough)["other"] is passthrough["other"]
