"""Closed-loop evaluation on fixed, seeded initial-state sets.

`initial_keys(seed, n)` names a set of initial states: two policies evaluated with the same seed
start from identical states (an env's reset is a pure function of its key). `evaluate_policy`
runs an `eval.policies.EvalPolicy` from every state of a set (`vlajax.envs.rollout.rollout`,
jitted, or `rollout_on_host` with the cameras rendered between jitted steps for a policy that
reads `obs["images"]`, in batches of at most `batch_size` episodes: the states do not depend on the batching),
with progress, and can record the first episodes for videos; `eval.report.build` turns the
per-episode `Episodes` into rates with Wilson intervals. `check_success_metric` says clearly when
an env has no success signal to rate.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vlajax.envs import rollout as rollout_lib


def initial_keys(seed: int, num_episodes: int) -> jax.Array:
  """u32[num_episodes, 2]: the reset keys of a fixed, seeded initial-state set."""
  if num_episodes < 1:
    raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
  return jax.random.split(jax.random.PRNGKey(seed), num_episodes)


def has_success_metric(env) -> bool:
  """Whether `env` reports `metrics["success"]` (traced, not run)."""
  return "success" in jax.eval_shape(env.reset, jax.random.PRNGKey(0)).metrics


def check_success_metric(env, env_name: str) -> None:
  """Raises ValueError when `env` reports no `metrics["success"]` (nothing to rate)."""
  metrics = jax.eval_shape(env.reset, jax.random.PRNGKey(0)).metrics
  if "success" not in metrics:
    raise ValueError(f"env '{env_name}' has no success metric (metrics: {sorted(metrics)});"
                     " a success rate needs an env that reports metrics['success']")


def evaluate_policy(env, policy, seed: int, num_episodes: int, episode_length: int | None = None,
                    batch_size: int = 256, policy_seed: int = 0, record_episodes: int = 0,
                    progress: Callable[[int, int], None] | None = None
                    ) -> tuple[rollout_lib.Episodes, dict | None]:
  """`policy` (an `eval.policies.EvalPolicy`) from every state of the set `(seed, num_episodes)`.

  Episodes run in batches of `batch_size` (the last one padded to the same shape, so one program
  is compiled); batch b's policy noise is `fold_in(PRNGKey(policy_seed), b)`. Returns the numpy
  `Episodes` of all episodes in set order and, with `record_episodes` > 0, the `render_trace` of
  the first `record_episodes` (leaves [T, record_episodes, ...]; recorded in the first batch, so
  at most `batch_size`). `progress(done, total)` is called after each batch.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  length = int(episode_length or env.config.episode_length)
  keys = initial_keys(seed, num_episodes)
  size = min(batch_size, num_episodes)
  program = _program(env, policy, length, size, record_episodes > 0)
  parts, trace = [], None
  for b, start in enumerate(range(0, num_episodes, size)):
    chunk = keys[start:start + size]
    valid = chunk.shape[0]
    chunk = jnp.concatenate([chunk, jnp.repeat(chunk[-1:], size - valid, axis=0)])
    rng = jax.random.fold_in(jax.random.PRNGKey(policy_seed), b)
    episodes = program(chunk, rng)
    episodes = jax.tree.map(np.asarray, episodes)
    if b == 0 and record_episodes:
      trace = jax.tree.map(lambda x: x[:, :record_episodes], episodes.trace)
    episodes = episodes.replace(trace=None)
    parts.append(jax.tree.map(lambda x, valid=valid: x[:valid], episodes))
    if progress is not None:
      progress(start + valid, num_episodes)
  return jax.tree.map(lambda *xs: np.concatenate(xs), *parts), trace


_PROGRAMS: dict = {}


def _program(env, policy, length: int, size: int, record: bool):
  """The jitted rollout of `size` episodes, kept per (env, policy, length, size, record) so that
  evaluating the same policy again (a second seed, a benchmark) does not recompile. One program
  serves every batch (each MJX compile costs minutes on a CPU): with videos, every batch records."""
  key = (id(env), id(policy), length, size, record)
  if key not in _PROGRAMS and policy.cameras:
    _PROGRAMS[key] = (_host_program(env, policy, length, size, record), env, policy)
  if key not in _PROGRAMS:
    batched = rollout_lib.make_batched_env(env, length)
    recorder = rollout_lib.render_trace if record else None

    def run(keys, rng):
      return rollout_lib.rollout(batched, policy.act, policy.init_carry(size), keys, length, rng,
                                 observe=policy.observe, record=recorder)
    # The env and policy are kept with the program, so their ids are not reused while cached.
    _PROGRAMS[key] = (jax.jit(run), env, policy)
  return _PROGRAMS[key][0]


def _host_program(env, policy, length: int, size: int, record: bool):
  """The rollout for a policy that reads camera images: jitted physics and policy, rendering of
  `policy.cameras` at `policy.image_size` on the host between them (`rollout_on_host`)."""
  from vlajax.envs import camera_wrapper  # pylint: disable=import-outside-toplevel
  camera_env = camera_wrapper.CameraWrapper(rollout_lib.make_batched_env(env, length),
                                            cameras=policy.cameras, size=policy.image_size)
  act = jax.jit(policy.act)
  observe = policy.observe
  recorder = rollout_lib.render_trace if record else None

  def run(keys, rng):
    return rollout_lib.rollout_on_host(camera_env, act, policy.init_carry(size), keys, length,
                                       rng, observe=observe, record=recorder)
  return run
