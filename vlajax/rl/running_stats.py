"""Running mean / variance for observation normalization.

Statistics are updated from a whole (global) batch inside `jit`; when the batch is sharded over a
device mesh the reduction spans all devices and hosts, so every device sees identical statistics.
Leaves are dicts keyed like the observation: `mean, var: f32[obs_dim]`, `count: f32[]`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
  mean: dict
  var: dict
  count: jax.Array


def init(obs_sizes: dict[str, tuple[int, ...]]) -> RunningStats:
  return RunningStats(mean={k: jnp.zeros(s) for k, s in obs_sizes.items()},
                      var={k: jnp.ones(s) for k, s in obs_sizes.items()},
                      count=jnp.zeros(()))


def update(stats: RunningStats, batch: dict[str, jax.Array]) -> RunningStats:
  """Merges a batch (leading axes flattened) with Chan et al.'s parallel-variance formula."""
  def flat(x, ref):
    return jnp.reshape(x, (-1,) + ref.shape)
  first = next(iter(batch))
  n = flat(batch[first], stats.mean[first]).shape[0]
  total = stats.count + n
  mean, var = {}, {}
  for key, old_mean in stats.mean.items():
    x = flat(batch[key], old_mean)
    batch_mean = jnp.mean(x, axis=0)
    batch_var = jnp.var(x, axis=0)
    delta = batch_mean - old_mean
    mean[key] = old_mean + delta * n / total
    m2 = stats.var[key] * stats.count + batch_var * n + delta ** 2 * stats.count * n / total
    var[key] = m2 / total
  return RunningStats(mean=mean, var=var, count=total)


def normalize(stats: RunningStats, obs: dict[str, jax.Array], clip: float | None = 10.0) -> dict:
  """(obs − mean) / std, clipped to ±clip (not clipped when `clip` is None or <= 0, as brax's
  normalizer); keys absent from `stats` pass through."""
  out = dict(obs)
  for key, mean in stats.mean.items():
    if key not in obs:
      continue
    std = jnp.sqrt(stats.var[key] + 1e-8)
    scaled = (obs[key] - mean) / std
    out[key] = jnp.clip(scaled, -clip, clip) if clip and clip > 0 else scaled
  return out
