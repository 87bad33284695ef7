"""Small observation encoders for policy heads that do not need a language model.

``ObservationEncoder`` maps a dict observation with a ``state`` vector (B, S) and/or images
(B, H, W, 3) under ``image_keys`` to one conditioning vector (B, width).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Dense-GELU stack; the last layer has no activation."""
  features: Sequence[int]

  @nn.compact
  def __call__(self, x):
    for i, f in enumerate(self.features):
      x = nn.Dense(f)(x)
      if i < len(self.features) - 1:
        x = nn.gelu(x)
    return x


class ConvEncoder(nn.Module):
  """Strided conv stack + global average pool: (B, H, W, C) -> (B, width)."""
  channels: Sequence[int] = (32, 64, 128)
  width: int = 256

  @nn.compact
  def __call__(self, images):
    x = images.astype(jnp.float32)
    for c in self.channels:
      x = nn.gelu(nn.GroupNorm(num_groups=min(8, c))(nn.Conv(c, (3, 3), strides=(2, 2))(x)))
    return nn.Dense(self.width)(jnp.mean(x, axis=(1, 2)))


class ObservationEncoder(nn.Module):
  """Concatenates an MLP embedding of ``obs[state_key]`` and conv embeddings of ``obs[image_keys]``."""
  width: int = 256
  state_key: str | None = "state"
  image_keys: Sequence[str] = ()

  @nn.compact
  def __call__(self, obs):
    parts = []
    if self.state_key is not None:
      if self.state_key not in obs:
        raise KeyError(f"observation has no {self.state_key!r} field (has {sorted(obs)})")
      parts.append(MLP((self.width, self.width), name="state")(obs[self.state_key].astype(jnp.float32)))
    for key in self.image_keys:
      if key not in obs:
        raise KeyError(f"observation has no image field {key!r} (has {sorted(obs)})")
      parts.append(ConvEncoder(width=self.width, name=f"image_{key}")(obs[key]))
    if not parts:
      raise ValueError("ObservationEncoder needs a state_key or at least one image key")
    return nn.Dense(self.width, name="fuse")(nn.gelu(jnp.concatenate(parts, axis=-1)))
