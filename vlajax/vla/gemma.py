"""Gemma-style decoder shared by several "experts" (pi0's language model + action expert).

Every expert has its own weights (norms, attention projections, MLP) and its own width, but all
experts have the same depth, head count, kv-head count and head_dim, so that in every layer the
tokens of all experts attend jointly: each token is projected to q/k/v by the weights of the expert
it belongs to, attention runs over the concatenated sequence, and the result goes back through that
expert's output projection and MLP.

Gemma details: RMSNorm computing ``x * rsqrt(mean(x^2) + 1e-6) * (1 + scale)``; rotary position
embeddings (half-split convention); tanh-GELU gated MLP; multi-query / grouped-query attention; the
expert-0 token embedding is tied to its output logits and scaled by ``sqrt(width)`` on input.

Parameter layout (stacked over layers by ``nn.scan``, leading axis = depth):
  layers/attn_{i}/q (L, N, D, H), k and v (L, K, D, H), o (L, N, H, D)
  layers/mlp_{i}/gate and up (L, D, F), down (L, F, D)
  layers/pre_attn_norm_{i}/scale and layers/pre_mlp_norm_{i}/scale (L, D)
  final_norm_{i}/scale (D,); embedder/input_embedding (V, D_0)
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlajax.vla.config import GemmaConfig
from vlajax.vla.masks import MASK_VALUE

# (keys, values), each (B, T, K, H) per layer; stacked over layers: (L, B, T, K, H).
KVCache = tuple[jnp.ndarray, jnp.ndarray]


class RMSNorm(nn.Module):
  """Gemma RMSNorm, computed in float32: ``x * rsqrt(mean(x^2) + eps) * (1 + scale)``."""
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.initializers.zeros_init(), (x.shape[-1],))
    y = x.astype(jnp.float32)
    y = y * jax.lax.rsqrt(jnp.mean(jnp.square(y), axis=-1, keepdims=True) + self.eps)
    return (y * (1.0 + scale)).astype(x.dtype)


class Embedder(nn.Module):
  """Tied token embedding: ``encode`` scales by sqrt(width); ``decode`` gives logits."""
  vocab_size: int
  width: int

  def setup(self):
    self.input_embedding = self.param(
        "input_embedding", nn.initializers.normal(stddev=self.width ** -0.5), (self.vocab_size, self.width))

  def encode(self, tokens: jnp.ndarray, dtype=jnp.float32) -> jnp.ndarray:
    """(B, S) int -> (B, S, D)."""
    x = jnp.take(self.input_embedding, tokens, axis=0).astype(dtype)
    return x * jnp.sqrt(jnp.asarray(self.width, dtype))

  def decode(self, x: jnp.ndarray) -> jnp.ndarray:
    """(B, S, D) -> (B, S, V) float32 logits."""
    return jnp.einsum("bsd,vd->bsv", x.astype(jnp.float32), self.input_embedding)


class AttentionWeights(nn.Module):
  """One expert's q/k/v/o projections; ``qkv`` and ``out`` are used around the joint attention."""
  config: GemmaConfig
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    c = self.config
    fan_in_d = nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=1, out_axis=(0, 2))
    fan_in_nh = nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=(0, 1), out_axis=2)
    self.q = self.param("q", fan_in_d, (c.num_heads, c.width, c.head_dim))
    self.k = self.param("k", fan_in_d, (c.num_kv_heads, c.width, c.head_dim))
    self.v = self.param("v", fan_in_d, (c.num_kv_heads, c.width, c.head_dim))
    self.o = self.param("o", fan_in_nh, (c.num_heads, c.head_dim, c.width))

  def qkv(self, x):
    """(B, S, D) -> q (B, S, N, H), k and v (B, S, K, H)."""
    w = lambda p: p.astype(self.dtype)
    return (jnp.einsum("bsd,ndh->bsnh", x, w(self.q)), jnp.einsum("bsd,kdh->bskh", x, w(self.k)),
            jnp.einsum("bsd,kdh->bskh", x, w(self.v)))

  def out(self, y):
    """(B, S, N, H) -> (B, S, D)."""
    return jnp.einsum("bsnh,nhd->bsd", y, self.o.astype(self.dtype))


class GatedMLP(nn.Module):
  """``down(gelu_tanh(x @ gate) * (x @ up))``."""
  config: GemmaConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    init = nn.initializers.lecun_normal()
    gate = self.param("gate", init, (c.width, c.mlp_dim)).astype(self.dtype)
    up = self.param("up", init, (c.width, c.mlp_dim)).astype(self.dtype)
    down = self.param("down", init, (c.mlp_dim, c.width)).astype(self.dtype)
    h = nn.gelu(x @ gate, approximate=True) * (x @ up)
    return h @ down


def apply_rope(x: jnp.ndarray, positions: jnp.ndarray, max_wavelength: float) -> jnp.ndarray:
  """Rotary embedding, half-split convention. x (B, S, N, H); positions (B, S)."""
  half = x.shape[-1] // 2
  timescale = max_wavelength ** (2.0 * jnp.arange(half, dtype=jnp.float32) / x.shape[-1])
  radians = positions[..., None].astype(jnp.float32) / timescale  # (B, S, H/2)
  sin, cos = jnp.sin(radians)[:, :, None, :], jnp.cos(radians)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def dot_product_attention(q, k, v, mask, dtype):
  """Grouped-query attention with a boolean mask.

  q (B, S, N, H) (already scaled); k, v (B, T, K, H); mask (B, S, T) -> (B, S, N, H).
  Logits and softmax in float32.
  """
  b, s, n, h = q.shape
  kv_heads = k.shape[2]
  q = q.reshape(b, s, kv_heads, n // kv_heads, h)
  logits = jnp.einsum("bskgh,btkh->bkgst", q, k, preferred_element_type=jnp.float32)
  logits = jnp.where(mask[:, None, None, :, :], logits, MASK_VALUE)
  probs = jax.nn.softmax(logits, axis=-1).astype(dtype)
  return jnp.einsum("bkgst,btkh->bskgh", probs, v).reshape(b, s, n, h)


class Block(nn.Module):
  """One decoder layer over all experts. Scanned over depth by ``Decoder``."""
  configs: Sequence[GemmaConfig]
  dtype: jnp.dtype = jnp.float32
  rope_max_wavelength: float = 10_000.0

  def setup(self):
    n = len(self.configs)
    self.pre_attn_norm = [RMSNorm(name=f"pre_attn_norm_{i}") for i in range(n)]
    self.attn = [AttentionWeights(c, self.dtype, name=f"attn_{i}") for i, c in enumerate(self.configs)]
    self.pre_mlp_norm = [RMSNorm(name=f"pre_mlp_norm_{i}") for i in range(n)]
    self.mlp = [GatedMLP(c, self.dtype, name=f"mlp_{i}") for i, c in enumerate(self.configs)]

  def __call__(self, xs, positions, mask, kv_cache):
    """xs: per-expert (B, S_i, D_i) or None. Returns (new xs, (k, v) over cache + new tokens)."""
    qs, ks, vs = [], [], []
    for i, x in enumerate(xs):
      if x is not None:
        q, k, v = self.attn[i].qkv(self.pre_attn_norm[i](x))
        qs.append(q)
        ks.append(k)
        vs.append(v)
    q, k, v = (jnp.concatenate(t, axis=1) for t in (qs, ks, vs))
    q = apply_rope(q, positions, self.rope_max_wavelength) * (q.shape[-1] ** -0.5)
    k = apply_rope(k, positions, self.rope_max_wavelength)
    if kv_cache is not None:
      k = jnp.concatenate([kv_cache[0].astype(k.dtype), k], axis=1)
      v = jnp.concatenate([kv_cache[1].astype(v.dtype), v], axis=1)
    encoded = dot_product_attention(q, k, v, mask, self.dtype)

    outs, start = [], 0
    for i, x in enumerate(xs):
      if x is None:
        outs.append(None)
        continue
      end = start + x.shape[1]
      x = x + self.attn[i].out(encoded[:, start:end])
      x = x + self.mlp[i](self.pre_mlp_norm[i](x))
      outs.append(x)
      start = end
    return outs, (k, v)


class Decoder(nn.Module):
  """Multi-expert Gemma decoder. Expert 0 owns the (tied) token embedding."""
  configs: Sequence[GemmaConfig]
  vocab_size: int
  dtype: jnp.dtype = jnp.float32
  rope_max_wavelength: float = 10_000.0
  remat: bool = False

  def setup(self):
    block = Block
    if self.remat:
      block = nn.remat(Block, prevent_cse=False, policy=jax.checkpoint_policies.nothing_saveable)
    self.layers = nn.scan(
        block, variable_axes={"params": 0}, split_rngs={"params": True},
        in_axes=(nn.broadcast, nn.broadcast, 0), length=self.configs[0].depth)(
            configs=tuple(self.configs), dtype=self.dtype, rope_max_wavelength=self.rope_max_wavelength)
    self.embedder = Embedder(self.vocab_size, self.configs[0].width)
    self.final_norm = [RMSNorm(name=f"final_norm_{i}") for i in range(len(self.configs))]

  def embed(self, tokens):
    """(B, S) int -> (B, S, D_0) in the compute dtype, scaled by sqrt(D_0)."""
    return self.embedder.encode(tokens, self.dtype)

  def logits(self, x):
    """Expert-0 outputs (B, S, D_0) -> (B, S, V) float32."""
    return self.embedder.decode(x)

  def __call__(self, xs, positions, mask, kv_cache: KVCache | None = None):
    """Runs all layers.

    Args:
      xs: per-expert token embeddings (B, S_i, D_i) or None (expert absent in this call).
      positions: (B, S) RoPE positions of the concatenated present tokens.
      mask: (B, S, T) bool with T = S (+ cached length when ``kv_cache`` is given).
      kv_cache: optional stacked (keys, values), each (L, B, T_cache, K, H).
    Returns:
      (per-expert final-normed outputs or None, stacked (keys, values) of all T tokens).
    """
    xs = [None if x is None else x.astype(self.dtype) for x in xs]
    xs, new_cache = self.layers(xs, positions, mask, kv_cache)
    outs = [None if x is None else self.final_norm[i](x) for i, x in enumerate(xs)]
    return outs, new_cache
