"""MLP networks for actor-critic learners.

`MLP(hidden, out)`: f32[..., in] -> f32[..., out]. Kernel init `orthogonal` (√2 on hidden layers,
`out_scale` on the output layer: purejaxrl's PPO, 0.01 for a policy head) or `lecun_uniform` (every
layer, `out_scale` ignored: brax's networks).
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable] = {"swish": nn.swish, "elu": nn.elu, "relu": nn.relu,
                                    "tanh": jnp.tanh, "gelu": nn.gelu}
INITS = ("orthogonal", "lecun_uniform")


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
  init_scheme: str = "orthogonal"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = activation(self.activation)
    if self.init_scheme == "orthogonal":
      hidden_init = nn.initializers.orthogonal(jnp.sqrt(2.0))
      out_init = nn.initializers.orthogonal(self.out_scale)
    elif self.init_scheme == "lecun_uniform":
      hidden_init = out_init = nn.initializers.lecun_uniform()
    else:
      raise ValueError(f"unknown MLP init_scheme '{self.init_scheme}' (use one of {INITS})")
    for width in self.hidden:
      x = nn.Dense(width, kernel_init=hidden_init)(x)
      if self.layer_norm:
        x = nn.LayerNorm()(x)
      x = act(x)
    return nn.Dense(self.out, kernel_init=out_init)(x)
