"""Action chunking utilities: chunks from trajectories, and ACT-style temporal ensembling.

``chunk_trajectory`` makes the H-step training target for every time step of one episode,
repeating the last action past the end and marking those steps invalid (so they never train).
``TemporalEnsemble`` (pure functions on a small state) averages the overlapping predictions of
consecutive chunks for the current step with weights ``exp(-alpha * i)``.
"""
from __future__ import annotations

import flax
import jax.numpy as jnp


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
