"""Next-token cross-entropy on text targets inside the prefix (co-training with language data).

A target token (``text_target_mask`` True, e.g. the answer of a VQA example or the continuation of an
instruction) at text position j is predicted from the language-model output at position j - 1; the
targets are causal in the prefix (``Pi0.embed_prefix``), so that output has not seen token j.
Non-target tokens (the prompt) and padding carry no loss.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def next_token_targets(tokens: jnp.ndarray, target_mask: jnp.ndarray, token_mask: jnp.ndarray):
  """Labels and weights for predicting text position j + 1 from position j.

  Args:
    tokens: (B, L) int token ids; target_mask, token_mask: (B, L) bool.
  Returns:
    labels (B, L - 1) int32 = tokens[:, 1:], weights (B, L - 1) float32 = 1 where tokens[:, 1:] is a
    real target token.
  """
  weights = jnp.asarray(target_mask, bool)[:, 1:] & jnp.asarray(token_mask, bool)[:, 1:]
  return jnp.asarray(tokens, jnp.int32)[:, 1:], weights.astype(jnp.float32)


def masked_cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
  """Mean over weighted positions of ``-log softmax(logits)[label]``; logits (B, S, V), labels and
  weights (B, S). Returns a float32 scalar (0 when no position is weighted)."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)
