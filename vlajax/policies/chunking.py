"""Action chunking utilities: chunks from trajectories, and ACT-style temporal ensembling.

``chunk_trajectory`` makes the H-step training target for every time step of one episode,
repeating the last action past the end and marking those steps invalid (so they never train).
``TemporalEnsemble`` (pure functions on a small state) averages the overlapping predictions of
consecutive chunks for the current step with weights ``exp(-alpha * i)``.

``replan_every_k`` and ``temporal_ensemble`` turn a batched chunk policy
``chunk_fn(obs, rng) -> f32[B, H, A]`` into a per-step ``act(carry, obs, rng) -> (action, carry)``
(the protocol of ``vlajax.envs.rollout``), jittable, for closed-loop evaluation.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp

# The per-step policy protocol of `vlajax.envs.rollout`: act(carry, obs, rng) -> (action, carry).
Act = Callable[[Any, dict, jax.Array], tuple[jax.Array, Any]]


def chunk_trajectory(actions: jnp.ndarray, horizon: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(T, A) actions -> chunks (T, H, A) with chunks[t, k] = actions[min(t + k, T - 1)], mask (T, H).

  ``mask[t, k]`` is False where t + k is past the episode end (the clamped repeats).
  """
  t = actions.shape[0]
  index = jnp.arange(t)[:, None] + jnp.arange(horizon)[None, :]
  return actions[jnp.minimum(index, t - 1)], index < t


@flax.struct.dataclass
class EnsembleState:
  predictions: jnp.ndarray   # (H, H, A): row j = the chunk predicted j steps ago
  valid: jnp.ndarray         # (H,) bool: row j holds a prediction


def ensemble_init(horizon: int, action_dim: int) -> EnsembleState:
  return EnsembleState(jnp.zeros((horizon, horizon, action_dim)), jnp.zeros((horizon,), bool))


def ensemble_step(state: EnsembleState, chunk: jnp.ndarray, alpha: float = 0.01,
                  oldest_first: bool = True) -> tuple[EnsembleState, jnp.ndarray]:
  """Adds this step's predicted chunk (H, A) and returns the ensembled action (A,) for this step.

  Every stored chunk predicted j steps ago contributes its entry j (its prediction for now). With
  ``oldest_first`` (ACT's implementation) the oldest contributing prediction gets weight 1 and newer
  ones exp(-alpha * i); otherwise the newest gets weight 1.
  """
  preds = jnp.concatenate([chunk[None], state.predictions[:-1]], axis=0)
  valid = jnp.concatenate([jnp.ones((1,), bool), state.valid[:-1]])
  ages = jnp.arange(preds.shape[0])
  for_now = preds[ages, ages]                       # (H, A): prediction for this step by age
  oldest = jnp.max(jnp.where(valid, ages, 0))
  rank = oldest - ages if oldest_first else ages    # 0 for the prediction weighted 1
  weights = jnp.where(valid, jnp.exp(-alpha * rank), 0.0)
  action = jnp.sum(weights[:, None] * for_now, axis=0) / jnp.sum(weights)
  return EnsembleState(preds, valid), action


def replan_every_k(chunk_fn: Callable[[dict, jax.Array], jax.Array], horizon: int,
                   execute: int) -> tuple[Act, Callable[[int, int], Any]]:
  """Executes the first `execute` actions of each `horizon`-step chunk, then replans (all envs of
  the batch replan on the same steps, so the chunk is computed only then). Returns `(act,
  init_carry)` with `init_carry(num_envs, action_size)`."""
  if not 1 <= execute <= horizon:
    raise ValueError(f"execute ({execute}) must be in 1..horizon ({horizon})")

  def act(carry, obs, rng):
    chunk, index = carry
    chunk = jax.lax.cond(index % execute == 0, lambda: _checked(chunk_fn(obs, rng), chunk),
                         lambda: chunk)
    return chunk[:, index % execute], (chunk, index + 1)

  def init_carry(num_envs: int, action_size: int):
    return jnp.zeros((num_envs, horizon, action_size)), jnp.zeros((), jnp.int32)
  return act, init_carry


def temporal_ensemble(chunk_fn: Callable[[dict, jax.Array], jax.Array], horizon: int,
                      alpha: float = 0.01, oldest_first: bool = True
                      ) -> tuple[Act, Callable[[int, int], Any]]:
  """ACT's temporal ensembling: a new chunk every step, the executed action the weighted mean of
  every stored chunk's prediction for this step (`policies.ensemble_step`). Returns
  `(act, init_carry)`."""
  step = jax.vmap(lambda s, c: ensemble_step(s, c, alpha, oldest_first))

  def act(carry, obs, rng):
    chunk = chunk_fn(obs, rng)
    carry, action = step(carry, _checked(chunk, carry.predictions[:, 0]))
    return action, carry

  def init_carry(num_envs: int, action_size: int):
    return jax.vmap(lambda _: ensemble_init(horizon, action_size))(jnp.arange(num_envs))
  return act, init_carry


def _checked(chunk: jax.Array, like: jax.Array) -> jax.Array:
  if chunk.shape != like.shape:
    raise ValueError(f"chunk policy returned shape {tuple(chunk.shape)}, expected "
                     f"{tuple(like.shape)} (num_envs, horizon, action_size)")
  return chunk
