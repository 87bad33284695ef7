"""MLP networks for actor-critic learners.

`MLP(hidden, out)`: f32[..., in] -> f32[..., out]. Orthogonal init (√2 on hidden layers), and a
small-scale output layer for policy heads, as is standard for PPO.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable] = {"swish": nn.swish, "elu": nn.elu, "relu": nn.relu,
                                    "tanh": jnp.tanh, "gelu": nn.gelu}


def activation(name: str) -> Callable:
  if name not in ACTIVATIONS:
    raise KeyError(f"unknown activation '{name}' (known: {', '.join(sorted(ACTIVATIONS))})")
  return ACTIVATIONS[name]


class MLP(nn.Module):
  """Hidden layers with `activation`, optional LayerNorm, then a linear output layer."""
  hidden: Sequence[int]
  out: int
  activation: str = "swish"
  layer_norm: bool = False
  out_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = activation(self.activation)
    for width in self.hidden:
      x = nn.Dense(width, kernel_init=nn.initializers.orthogonal(jnp.sqrt(2.0)))(x)
      if self.layer_norm:
        x = nn.LayerNorm()(x)
      x = act(x)
    return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(self.out_scale))(x)
