"""Normalization statistics of actions and proprioception, their cache, and (un)normalization.

Statistics per dataset (over every step of the split, after standardization): mean, std, min, max,
q01, q99 per dim, plus step and episode counts. They are computed once and cached as JSON in a
`stats_dir` (the run directory) under a hash of the dataset identity (directory, split, episode
count, registry version), so a changed dataset or transform gets fresh statistics.

Modes: "normal" (z-score, (x - mean) / (std + eps)) and "bounds" (quantile: q01 -> -1, q99 -> +1,
clipped to [-1, 1]). Dims whose mask is False (the gripper) pass through unchanged. The same
functions work on numpy, JAX and TF arrays (they only use arithmetic and `where`), so a policy can
un-normalize its outputs with the stats saved beside its checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from vlajax.core import atomic

EPS = 1e-8
MODES = ("normal", "bounds", "none")


def compute_stats(values: np.ndarray, num_episodes: int | None = None) -> dict[str, Any]:
  """Per-dim statistics of float[N, D] `values` (numpy percentiles, linear interpolation)."""
  values = np.asarray(values, np.float64)
  if values.ndim != 2 or len(values) == 0:
    raise ValueError(f"statistics need a non-empty [N, D] array, got shape {values.shape}")
  return {
      "mean": values.mean(0).tolist(), "std": values.std(0).tolist(),
      "min": values.min(0).tolist(), "max": values.max(0).tolist(),
      "q01": np.percentile(values, 1, axis=0).tolist(),
      "q99": np.percentile(values, 99, axis=0).tolist(),
      "num_transitions": int(len(values)),
      "num_trajectories": int(num_episodes) if num_episodes is not None else None,
  }


def _where(xp_mask, a, b):
  # numpy / jax / tf all broadcast `mask * a + (1 - mask) * b` identically; used to stay generic.
  return xp_mask * a + (1.0 - xp_mask) * b


def _as_float(x):
  # A TF tensor exists only where TensorFlow is imported already; importing it here would break a
  # process that renders (TensorFlow and Mesa's EGL cannot share one: `imitation.collect.write`).
  tf = sys.modules.get("tensorflow")
  if tf is not None and isinstance(x, tf.Tensor):
    return tf.cast(x, tf.float32), tf
  if type(x).__module__.startswith("jax"):
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    return jnp.asarray(x, jnp.float32), jnp
  return np.asarray(x, np.float32), np


def normalize(x, stats: Mapping[str, Sequence[float]], mode: str = "normal",
              mask: Sequence[bool] | None = None):
  """Normalizes the last axis of `x` (numpy / JAX / TF) with `stats`; masked-out dims unchanged."""
  if mode not in MODES:
    raise ValueError(f"unknown normalization mode '{mode}' (valid: {', '.join(MODES)})")
  x, xp = _as_float(x)
  if mode == "none":
    return x
  m = np.ones(len(stats["mean"]), np.float32) if mask is None else np.asarray(mask, np.float32)
  if mode == "normal":
    mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    y = (x - mean) / (std + EPS)
  else:
    lo, hi = np.asarray(stats["q01"], np.float32), np.asarray(stats["q99"], np.float32)
    y = 2.0 * (x - lo) / (hi - lo + EPS) - 1.0
    y = xp.clip_by_value(y, -1.0, 1.0) if xp.__name__.startswith("tensorflow") else xp.clip(
        y, -1.0, 1.0)
  return _where(m, y, x)


def unnormalize(y, stats: Mapping[str, Sequence[float]], mode: str = "normal",
                mask: Sequence[bool] | None = None):
  """Inverse of `normalize` (exact for "normal"; for "bounds" exact inside [q01, q99])."""
  if mode not in MODES:
    raise ValueError(f"unknown normalization mode '{mode}' (valid: {', '.join(MODES)})")
  y, _ = _as_float(y)
  if mode == "none":
    return y
  m = np.ones(len(stats["mean"]), np.float32) if mask is None else np.asarray(mask, np.float32)
  if mode == "normal":
    mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    x = y * (std + EPS) + mean
  else:
    lo, hi = np.asarray(stats["q01"], np.float32), np.asarray(stats["q99"], np.float32)
    x = (y + 1.0) / 2.0 * (hi - lo + EPS) + lo
  return _where(m, x, y)


def cache_key(identity: Mapping[str, Any]) -> str:
  blob = json.dumps(identity, sort_keys=True, default=str).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def load_or_compute(stats_dir: str | None, name: str, identity: Mapping[str, Any], compute):
  """Cached stats `stats_dir/stats_<name>_<hash>.json`, or `compute()` (then written atomically)."""
  path = None
  if stats_dir:
    path = os.path.join(stats_dir, f"stats_{name}_{cache_key(identity)}.json")
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)
  stats = compute()
  stats["identity"] = dict(identity)
  if path:
    os.makedirs(stats_dir, exist_ok=True)
    atomic.write_json(path, stats, indent=1, default=str)
  return stats
