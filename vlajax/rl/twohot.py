"""Discrete regression with two-hot targets in symlog space (DreamerV3 / TD-MPC2).

A scalar y is represented as a distribution over `num_bins` evenly spaced bins on
[vmin, vmax] in symlog space: the two bins around symlog(y) share the mass in proportion to
closeness. A network predicts logits over the bins; the scalar is symexp(Σ softmax(logits)·bins).
TD-MPC2 defaults: 101 bins on [-10, 10].

Shapes: `encode(y: f32[...]) -> f32[..., num_bins]`, `decode(logits: f32[..., num_bins]) -> f32[...]`,
`cross_entropy(logits: f32[..., num_bins], y: f32[...]) -> f32[...]`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


def symlog(x: jax.Array) -> jax.Array:
  return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: jax.Array) -> jax.Array:
  return jnp.sign(x) * jnp.expm1(jnp.abs(x))


@struct.dataclass
class Bins:
  num_bins: int = struct.field(pytree_node=False, default=101)
  vmin: float = struct.field(pytree_node=False, default=-10.0)
  vmax: float = struct.field(pytree_node=False, default=10.0)

  def __post_init__(self):
    if self.num_bins < 2 or not self.vmax > self.vmin:
      raise ValueError(f"two-hot bins need num_bins ≥ 2 and vmax > vmin (got {self.num_bins}, "
                       f"[{self.vmin}, {self.vmax}])")

  @property
  def width(self) -> float:
    return (self.vmax - self.vmin) / (self.num_bins - 1)

  @property
  def centers(self) -> jax.Array:
    return jnp.linspace(self.vmin, self.vmax, self.num_bins)

  def encode(self, y: jax.Array) -> jax.Array:
    """Two-hot target of `y` (clipped to the symlog range)."""
    x = jnp.clip(symlog(y), self.vmin, self.vmax)
    pos = (x - self.vmin) / self.width
    low = jnp.clip(jnp.floor(pos), 0, self.num_bins - 2)
    frac = pos - low
    low = low.astype(jnp.int32)
    one_hot = jax.nn.one_hot(low, self.num_bins)
    return one_hot * (1.0 - frac)[..., None] + jnp.roll(one_hot, 1, axis=-1) * frac[..., None]

  def decode(self, logits: jax.Array) -> jax.Array:
    """Expected value under softmax(logits), mapped back with symexp."""
    return symexp(jnp.sum(jax.nn.softmax(logits, axis=-1) * self.centers, axis=-1))

  def cross_entropy(self, logits: jax.Array, y: jax.Array) -> jax.Array:
    """−Σ two_hot(y) · log_softmax(logits): the regression loss."""
    return -jnp.sum(self.encode(y) * jax.nn.log_softmax(logits, axis=-1), axis=-1)
