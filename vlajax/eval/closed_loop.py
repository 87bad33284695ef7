"""Closed-loop evaluation on fixed, seeded initial-state sets.

`initial_keys(seed, n)` names a set of initial states: two policies evaluated with the same seed
start from identical states (an env's reset is a pure function of its key). `evaluate` runs one
episode per key (`vlajax.envs.rollout.rollout`, jitted) and returns the per-episode `Episodes`;
`summarize` turns them into the report fields (n, successes, rate and its Wilson 95% interval,
mean return / length / time to success).
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from vlajax.envs import rollout as rollout_lib
from vlajax.eval import stats


def initial_keys(seed: int, num_episodes: int) -> jax.Array:
  """u32[num_episodes, 2]: the reset keys of a fixed, seeded initial-state set."""
  if num_episodes < 1:
    raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
  return jax.random.split(jax.random.PRNGKey(seed), num_episodes)


def evaluate(env, act: rollout_lib.Act, carry: Any, seed: int, num_episodes: int,
             episode_length: int | None = None, policy_seed: int = 0) -> rollout_lib.Episodes:
  """One closed-loop episode of `act` from each state of the set `(seed, num_episodes)` of the
  (unbatched) `env`, `episode_length` control steps (default the env's); numpy outcomes."""
  length = int(episode_length or env.config.episode_length)
  batched = rollout_lib.make_batched_env(env, length)
  run = jax.jit(lambda carry, keys, rng: rollout_lib.rollout(batched, act, carry, keys, length,
                                                             rng))
  episodes = run(carry, initial_keys(seed, num_episodes), jax.random.PRNGKey(policy_seed))
  return jax.tree.map(np.asarray, episodes)


def summarize(episodes: rollout_lib.Episodes, confidence: float = 0.95) -> dict:
  """Report fields: n, successes, success rate with its Wilson interval, mean return and length,
  mean time to success over the successful episodes (None when there are none)."""
  n = int(episodes.success.shape[0])
  successes = int(np.sum(episodes.success))
  low, high = stats.wilson_interval(successes, n, confidence)
  reached = episodes.time_to_success[episodes.success]
  return {"n": n, "successes": successes, "success_rate": successes / n,
          "wilson_low": low, "wilson_high": high,
          "mean_return": float(np.mean(episodes.episode_return)),
          "mean_length": float(np.mean(episodes.length)),
          "mean_time_to_success": float(np.mean(reached)) if reached.size else None}
