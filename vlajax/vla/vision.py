"""SigLIP-style vision transformer (pre-LN ViT, learned position embeddings, no class token).

``images (B, H, W, 3)`` in [-1, 1] -> patch tokens ``(B, (H/p)*(W/p), out_width)``: a p x p stride-p
convolution, plus a learned (1, N, D) position embedding, ``depth`` pre-LN encoder blocks with
multi-head attention and a tanh-GELU MLP, a final LayerNorm, then a linear projection into the
language model's width (PaliGemma's multi-modal projector).

Parameter layout: embedding/kernel (p, p, 3, D) and bias; pos_embedding (1, N, D);
encoder/ln_attn, encoder/attn_{query,key,value}/kernel (L, D, heads, Dh) and bias (L, heads, Dh),
encoder/attn_out/kernel (L, heads, Dh, D); encoder/ln_mlp, encoder/mlp_fc1, mlp_fc2; encoder_norm;
head/kernel (D, out_width) and bias.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlajax.vla.config import VisionConfig


class EncoderBlock(nn.Module):
  config: VisionConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, _):
    c = self.config
    head_dim = c.width // c.num_heads
    dense = lambda name, **kw: nn.DenseGeneral(name=name, dtype=self.dtype, **kw)

    h = nn.LayerNorm(epsilon=1e-6, name="ln_attn", dtype=self.dtype)(x)
    with_heads = dict(features=(c.num_heads, head_dim), axis=-1)
    q = dense("attn_query", **with_heads)(h) * (head_dim ** -0.5)
    k = dense("attn_key", **with_heads)(h)
    v = dense("attn_value", **with_heads)(h)
    logits = jnp.einsum("bqnh,bknh->bnqk", q, k, preferred_element_type=jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    y = jnp.einsum("bnqk,bknh->bqnh", probs, v)
    x = x + dense("attn_out", features=c.width, axis=(-2, -1))(y)

    h = nn.LayerNorm(epsilon=1e-6, name="ln_mlp", dtype=self.dtype)(x)
    h = nn.gelu(nn.Dense(c.mlp_dim, name="mlp_fc1", dtype=self.dtype)(h), approximate=True)
    x = x + nn.Dense(c.width, name="mlp_fc2", dtype=self.dtype)(h)
    return x, None


class VisionEncoder(nn.Module):
  """SigLIP ViT + projection. (B, H, W, 3) float in [-1, 1] -> (B, N, out_width)."""
  config: VisionConfig
  out_width: int
  dtype: jnp.dtype = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, images):
    c = self.config
    if images.shape[-3:] != (c.image_size, c.image_size, 3):
      raise ValueError(f"images have shape {images.shape}; expected (..., {c.image_size}, {c.image_size}, 3)")
    x = nn.Conv(c.width, (c.patch_size, c.patch_size), strides=(c.patch_size, c.patch_size),
                padding="VALID", name="embedding", dtype=self.dtype)(images.astype(self.dtype))
    x = x.reshape(x.shape[0], -1, c.width)
    pos = self.param("pos_embedding", nn.initializers.normal(stddev=c.width ** -0.5), (1, x.shape[1], c.width))
    x = x + pos.astype(self.dtype)
    block = EncoderBlock
    if self.remat:
      block = nn.remat(EncoderBlock, prevent_cse=False, policy=jax.checkpoint_policies.nothing_saveable)
    x, _ = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                   length=c.depth)(c, self.dtype, name="encoder")(x, None)
    x = nn.LayerNorm(epsilon=1e-6, name="encoder_norm", dtype=self.dtype)(x)
    return nn.Dense(self.out_width, name="head", dtype=self.dtype)(x)
