"""Block-causal attention masks and positions from per-token flags (the pi0 ``ar_mask`` rule).

Every token carries ``input_mask`` (True = real token, False = padding) and ``ar_mask`` (True = this
token opens a new block). With ``blocks = cumsum(ar_mask)``, token i may attend to token j iff
``blocks[j] <= blocks[i]`` and both are real. Hence tokens of one block see each other
(bidirectional), later blocks see earlier ones, earlier blocks never see later ones.

pi0 layout: prefix (images + text) all False -> one bidirectional block; the state token True -> its
own block that sees the prefix; the first action token True and the rest False -> one block that sees
the prefix, the state and each other.
"""
from __future__ import annotations

import jax.numpy as jnp

# Large negative logit for masked attention entries (finite, so fully masked rows stay NaN-free).
MASK_VALUE = -2.3819763e38


def make_attention_mask(input_mask: jnp.ndarray, ar_mask: jnp.ndarray) -> jnp.ndarray:
  """Boolean attention mask.

  Args:
    input_mask: (B, S) bool, True for real tokens.
    ar_mask: (B, S) or (S,) bool, True where a token starts a new block.
  Returns:
    (B, S, S) bool, ``[b, i, j]`` True when query i may attend to key j.
  """
  ar_mask = jnp.broadcast_to(ar_mask, input_mask.shape)
  blocks = jnp.cumsum(ar_mask.astype(jnp.int32), axis=1)
  causal = blocks[:, None, :] <= blocks[:, :, None]
  valid = input_mask[:, None, :] & input_mask[:, :, None]
  return causal & valid


def positions_from_mask(input_mask: jnp.ndarray, offset: jnp.ndarray | int = 0) -> jnp.ndarray:
  """RoPE positions: ``offset + cumsum(input_mask) - 1``; (B, S) int32. ``offset`` may be (B,)."""
  offset = jnp.asarray(offset, jnp.int32)
  if offset.ndim == 1:
    offset = offset[:, None]
  return offset + jnp.cumsum(input_mask.astype(jnp.int32), axis=1) - 1


def suffix_attention_mask(prefix_mask: jnp.ndarray, suffix_mask: jnp.ndarray,
                          suffix_ar_mask: jnp.ndarray) -> jnp.ndarray:
  """Mask of suffix queries over [cached prefix keys, suffix keys] for KV-cached decoding.

  The prefix forms one block that precedes every suffix block, so each real suffix token sees every
  real prefix token; among themselves suffix tokens follow the ar_mask rule.

  Args:
    prefix_mask: (B, P) bool. suffix_mask: (B, S) bool. suffix_ar_mask: (S,) or (B, S) bool.
  Returns:
    (B, S, P + S) bool.
  """
  to_prefix = prefix_mask[:, None, :] & suffix_mask[:, :, None]
  to_suffix = make_attention_mask(suffix_mask, suffix_ar_mask)
  return jnp.concatenate([to_prefix, to_suffix], axis=2)
