"""Action chunking utilities: chunks from trajectories, and executing chunks in a jitted rollout.

``chunk_trajectory`` makes the H-step training target for every time step of one episode,
repeating the last action past the end and marking those steps invalid (so they never train).

``execute_chunks`` turns a batched chunk policy ``chunk_fn(obs, rng) -> f32[B, H, A]`` into a
per-step ``act(carry, obs, rng) -> (action, carry)`` (the protocol of ``vlajax.envs.rollout``),
jittable, for closed-loop evaluation: execute K of each chunk and merge the next one by a
``policies.execution.MergeRule``, with the bridge executor's maths (``policies.execution``; the
same action sequence as a zero-latency ``bridge.executor.ActionQueue``). ``replan_every_k``
(replace after K) and ``temporal_ensemble`` (ACT: a chunk every step, overlapping predictions
averaged with weights ``exp(-alpha * i)``) are its two common cases; ``ensemble_step`` is one
step of the latter for one chunk stream.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from vlajax.policies import execution

# The per-step policy protocol of `vlajax.envs.rollout`: act(carry, obs, rng) -> (action, carry).
Act = Callable[[Any, dict, jax.Array], tuple[jax.Array, Any]]
ChunkFn = Callable[[dict, jax.Array], jax.Array]
# One chunk stream's pending actions (`policies.execution.Pending`, H ticks).
EnsembleState = execution.Pending


def chunk_trajectory(actions: jnp.ndarray, horizon: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(T, A) actions -> chunks (T, H, A) with chunks[t, k] = actions[min(t + k, T - 1)], mask (T, H).

  ``mask[t, k]`` is False where t + k is past the episode end (the clamped repeats).
  """
  t = actions.shape[0]
  index = jnp.arange(t)[:, None] + jnp.arange(horizon)[None, :]
  return actions[jnp.minimum(index, t - 1)], index < t


def ensemble_init(horizon: int, action_dim: int) -> EnsembleState:
  return execution.empty(horizon, action_dim, xp=jnp)


def ensemble_step(state: EnsembleState, chunk: jnp.ndarray, alpha: float = 0.01,
                  oldest_first: bool = True) -> tuple[EnsembleState, jnp.ndarray]:
  """Adds this step's predicted chunk (H, A) and returns the ensembled action (A,) for this step.

  Every chunk predicted j < H steps ago contributes its entry j (its prediction for now). With
  ``oldest_first`` (ACT's implementation) the oldest contributing prediction gets weight 1 and newer
  ones exp(-alpha * i); otherwise the newest gets weight 1 (``execution.MergeRule`` "ensemble").
  """
  rule = execution.MergeRule("ensemble", alpha, "old" if oldest_first else "new")
  action, state = execution.pop(execution.merge(state, chunk, rule, jnp), jnp)
  return state, action


def execute_chunks(chunk_fn: ChunkFn, horizon: int, execute: int,
                   rule: execution.MergeRule = execution.MergeRule()
                   ) -> tuple[Act, Callable[[int, int], Any]]:
  """Executes `execute` (K) actions of each `horizon`-step (H) chunk, then plans the next chunk and
  merges it with the H - K pending actions by `rule` (replace, ensemble or crossfade). All envs of
  the batch plan on the same steps, so the chunk is computed only then. Returns `(act,
  init_carry)` with `init_carry(num_envs, action_size)`; the carry is the pending actions and
  their number."""
  threshold = execution.refill_threshold(horizon, execute)
  rule.validate()

  def act(carry, obs, rng):
    pending, queued = carry
    plan = execution.needs_plan(queued, horizon, threshold)
    pending = jax.lax.cond(
        plan, lambda: execution.merge(pending, _checked(chunk_fn(obs, rng), pending.total),
                                      rule, jnp),
        lambda: pending)
    action, pending = execution.pop(pending, jnp)
    return action, (pending, jnp.where(plan, horizon, queued) - 1)

  def init_carry(num_envs: int, action_size: int):
    return (execution.empty(horizon, action_size, (num_envs,), jnp), jnp.zeros((), jnp.int32))
  return act, init_carry


def replan_every_k(chunk_fn: ChunkFn, horizon: int,
                   execute: int) -> tuple[Act, Callable[[int, int], Any]]:
  """Executes the first `execute` actions of each `horizon`-step chunk, then replans
  (`execute_chunks` with "replace"). Returns `(act, init_carry)` with
  `init_carry(num_envs, action_size)`."""
  return execute_chunks(chunk_fn, horizon, execute, execution.MergeRule("replace"))


def temporal_ensemble(chunk_fn: ChunkFn, horizon: int, alpha: float = 0.01,
                      oldest_first: bool = True) -> tuple[Act, Callable[[int, int], Any]]:
  """ACT's temporal ensembling: a new chunk every step, the executed action the weighted mean of
  every pending prediction for this step (`execute_chunks` with K = 1 and "ensemble"). Returns
  `(act, init_carry)`."""
  rule = execution.MergeRule("ensemble", alpha, "old" if oldest_first else "new")
  return execute_chunks(chunk_fn, horizon, 1, rule)


def _checked(chunk: jax.Array, like: jax.Array) -> jax.Array:
  if chunk.shape != like.shape:
    raise ValueError(f"chunk policy returned shape {tuple(chunk.shape)}, expected "
                     f"{tuple(like.shape)} (num_envs, horizon, action_size)")
  return chunk
