"""Small observation encoders for policy heads that do not need a language model.

``ObservationEncoder`` maps a dict observation with a state vector (B, S) and/or images
(B, H, W, 3) under ``image_keys`` to one conditioning vector (B, width). Every field may carry an
observation-history axis T after the batch axis ((B, T, S), (B, T, H, W, 3)): state histories are
flattened, and each image frame is encoded by the same network and the frame features concatenated.

``ImageTokenEncoder`` returns per-camera spatial feature tokens (B, N, D) with 2-D sine-cosine
positions, for transformer heads (ACT). Image networks: ``ConvEncoder`` (strided convs, average
pool) and ``ResNetEncoder`` (residual blocks with GroupNorm, spatial-softmax or average pool).

``random_shift`` is DrQ-style random-shift augmentation (edge-pad by ``pad`` px, random crop back)
as a pure function. uint8 images enter every network as floats in [-1, 1] (``image_to_float``).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

IMAGE_ENCODERS = ("conv", "resnet")


def image_to_float(images: jax.Array) -> jax.Array:
  """uint8 images -> float32 in [-1, 1] (``x / 127.5 - 1``); float images pass through unchanged."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 127.5 - 1.0
  return images.astype(jnp.float32)


def random_shift(images: jax.Array, rng: jax.Array, pad: int = 4) -> jax.Array:
  """Random-shift augmentation (DrQ): edge-pad by ``pad`` px on each side, crop back at random.

  Each example gets its own integer shift in [-pad, pad] along height and width; the frames of one
  example's history share that shift, so the history stays consistent.

  Args:
    images: (B, H, W, C) or (B, T, H, W, C), any dtype (uint8 stays uint8).
    rng: PRNG key.
    pad: maximum shift in pixels; 0 returns ``images`` unchanged.
  Returns:
    Shifted images of the same shape and dtype.
  """
  if pad == 0:
    return images
  if images.ndim not in (4, 5):
    raise ValueError(f"random_shift expects (B, H, W, C) or (B, T, H, W, C) images, got shape "
                     f"{tuple(images.shape)}")
  shape = images.shape
  b, h, w, c = shape[0], shape[-3], shape[-2], shape[-1]
  frames = images.reshape(b, -1, h, w, c)
  padded = jnp.pad(frames, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
  offsets = jax.random.randint(rng, (b, 2), 0, 2 * pad + 1)

  def crop(example, offset):
    return jax.lax.dynamic_slice(example, (0, offset[0], offset[1], 0), (example.shape[0], h, w, c))

  return jax.vmap(crop)(padded, offsets).reshape(shape)


def augment_images(obs: dict, image_keys: Sequence[str], rng: jax.Array, pad: int = 4) -> dict:
  """Returns a copy of ``obs`` with ``random_shift`` applied to every ``image_keys`` field (one key each)."""
  obs = dict(obs)
  for key, key_rng in zip(image_keys, jax.random.split(rng, max(len(image_keys), 1))):
    obs[key] = random_shift(obs[key], key_rng, pad)
  return obs


def spatial_softmax(features: jax.Array) -> jax.Array:
  """Expected image coordinates of each channel's softmax over space: (B, h, w, C) -> (B, 2C).

  Coordinates lie in [-1, 1]; the output is [x_1..x_C, y_1..y_C] (Levine et al. 2016 keypoints).
  """
  b, h, w, c = features.shape
  attention = jax.nn.softmax(features.reshape(b, h * w, c).astype(jnp.float32), axis=1)
  ys, xs = jnp.meshgrid(jnp.linspace(-1.0, 1.0, h), jnp.linspace(-1.0, 1.0, w), indexing="ij")
  x = jnp.einsum("bnc,n->bc", attention, xs.reshape(-1))
  y = jnp.einsum("bnc,n->bc", attention, ys.reshape(-1))
  return jnp.concatenate([x, y], axis=-1)


def sincos_2d_positions(height: int, width: int, dim: int, temperature: float = 10000.0) -> jax.Array:
  """Fixed 2-D sine-cosine position embedding (DETR style): (height * width, dim), row-major.

  The first half of the channels encodes the row, the second half the column, each as
  [sin(p * f_1..f_{dim/4}), cos(p * f_1..f_{dim/4})] with geometric frequencies.
  """
  if dim % 4:
    raise ValueError(f"2-D position embedding dim must be divisible by 4, got {dim}")
  frequency = 1.0 / temperature ** (jnp.arange(dim // 4) / (dim // 4))

  def encode(positions):   # (n,) -> (n, dim / 2)
    angle = positions[:, None] * frequency[None, :]
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)

  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32),
                            indexing="ij")
  return jnp.concatenate([encode(rows.reshape(-1)), encode(cols.reshape(-1))], axis=-1)


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


def _conv_stack(x: jax.Array, channels: Sequence[int]) -> jax.Array:
  """Strided 3x3 conv + GroupNorm + GELU per entry of ``channels`` (call inside a compact method)."""
  for c in channels:
    x = nn.gelu(nn.GroupNorm(num_groups=min(8, c))(nn.Conv(c, (3, 3), strides=(2, 2))(x)))
  return x


class ConvBackbone(nn.Module):
  """The ``ConvEncoder`` conv stack without pooling: (B, H, W, 3) -> feature map (B, h, w, C)."""
  channels: Sequence[int] = (32, 64, 128)

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    return _conv_stack(image_to_float(images), self.channels)


class ConvEncoder(nn.Module):
  """Strided conv stack + global average pool: (B, H, W, C) -> (B, width)."""
  channels: Sequence[int] = (32, 64, 128)
  width: int = 256

  @nn.compact
  def __call__(self, images):
    x = _conv_stack(image_to_float(images), self.channels)
    return nn.Dense(self.width)(jnp.mean(x, axis=(1, 2)))


class ResidualBlock(nn.Module):
  """Two 3x3 convs with GroupNorm and ReLU plus a skip (1x1 conv where the shape changes)."""
  features: int
  strides: int = 1
  num_groups: int = 8

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    groups = min(self.num_groups, self.features)
    y = nn.Conv(self.features, (3, 3), strides=(self.strides, self.strides), use_bias=False)(x)
    y = nn.relu(nn.GroupNorm(num_groups=groups)(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False)(y)
    y = nn.GroupNorm(num_groups=groups)(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), strides=(self.strides, self.strides), use_bias=False,
                  name="skip")(x)
      x = nn.GroupNorm(num_groups=groups, name="skip_norm")(x)
    return nn.relu(x + y)


class ResNetBackbone(nn.Module):
  """ResNet-style feature extractor with GroupNorm: (B, H, W, 3) -> feature map (B, h, w, C).

  A 3x3 stem conv (stride ``stem_strides``), then one stage per entry of ``channels`` with
  ``blocks_per_stage`` residual blocks; every stage after the first halves the resolution.
  """
  channels: Sequence[int] = (32, 64, 128)
  blocks_per_stage: int = 1
  stem_strides: int = 2
  num_groups: int = 8

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    x = image_to_float(images)
    x = nn.Conv(self.channels[0], (3, 3), strides=(self.stem_strides, self.stem_strides), use_bias=False,
                name="stem")(x)
    x = nn.relu(nn.GroupNorm(num_groups=min(self.num_groups, self.channels[0]), name="stem_norm")(x))
    for stage, c in enumerate(self.channels):
      for block in range(self.blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = ResidualBlock(c, strides, self.num_groups, name=f"stage{stage}_block{block}")(x)
    return x


class ResNetEncoder(nn.Module):
  """``ResNetBackbone`` + pooling (``"spatial_softmax"`` or ``"avg"``) + Dense: (B, H, W, 3) -> (B, width)."""
  channels: Sequence[int] = (32, 64, 128)
  width: int = 256
  pool: str = "spatial_softmax"
  blocks_per_stage: int = 1

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    x = ResNetBackbone(self.channels, self.blocks_per_stage, name="backbone")(images)
    if self.pool == "spatial_softmax":
      pooled = spatial_softmax(nn.Conv(x.shape[-1], (1, 1), name="keypoints")(x))
    elif self.pool == "avg":
      pooled = jnp.mean(x, axis=(1, 2))
    else:
      raise ValueError(f"unknown pool {self.pool!r}; expected 'spatial_softmax' or 'avg'")
    return nn.Dense(self.width)(pooled)


def _check_image_encoder(name: str) -> None:
  if name not in IMAGE_ENCODERS:
    raise ValueError(f"unknown image_encoder {name!r}; expected one of {IMAGE_ENCODERS}")


def _frames(images: jax.Array, key: str) -> tuple[jax.Array, int | None]:
  """(B, H, W, C) -> (images, None); (B, T, H, W, C) -> ((B * T, H, W, C), T)."""
  if images.ndim == 4:
    return images, None
  if images.ndim == 5:
    return images.reshape((-1,) + images.shape[2:]), images.shape[1]
  raise ValueError(f"image field {key!r} must be (B, H, W, 3) or (B, T, H, W, 3), got shape "
                   f"{tuple(images.shape)}")


def get_field(obs: dict, key: str, what: str = "field") -> Any:
  """``obs[key]`` with a KeyError that names the key and the available fields."""
  if key not in obs:
    raise KeyError(f"observation has no {what} {key!r} (has {sorted(obs)})")
  return obs[key]


def flatten_state(state: jax.Array) -> jax.Array:
  """(B, S) or (B, T, S) state -> float32 (B, S) or (B, T * S)."""
  return state.reshape(state.shape[0], -1).astype(jnp.float32)


class ObservationEncoder(nn.Module):
  """Concatenates an MLP embedding of ``obs[state_key]`` and image embeddings of ``obs[image_keys]``.

  Input shapes: state (B, S) or (B, T, S); images (B, H, W, 3) or (B, T, H, W, 3) (uint8 or float).
  Output: (B, width). A history axis T is flattened into the features (state) or encoded frame by
  frame with shared weights and concatenated over T (images), so the fused width is fixed by T.

  Attributes:
    width: output (and per-part embedding) width.
    state_key: observation field with the proprioceptive state, or None for none.
    image_keys: observation fields with camera images; one image network per key.
    image_encoder: ``"conv"`` (``ConvEncoder``) or ``"resnet"`` (``ResNetEncoder``).
    image_channels: channels of the image network; None uses the network's default.
  """
  width: int = 256
  state_key: str | None = "state"
  image_keys: Sequence[str] = ()
  image_encoder: str = "conv"
  image_channels: Sequence[int] | None = None

  @nn.compact
  def __call__(self, obs):
    _check_image_encoder(self.image_encoder)
    parts = []
    if self.state_key is not None:
      state = get_field(obs, self.state_key)
      parts.append(MLP((self.width, self.width), name="state")(flatten_state(state)))
    for key in self.image_keys:
      images, history = _frames(get_field(obs, key, "image field"), key)
      kwargs = {} if self.image_channels is None else {"channels": tuple(self.image_channels)}
      if self.image_encoder == "conv":
        net = ConvEncoder(width=self.width, name=f"image_{key}", **kwargs)
      else:
        net = ResNetEncoder(width=self.width, name=f"image_{key}", **kwargs)
      features = net(images)
      if history is not None:
        features = features.reshape(-1, history * self.width)
      parts.append(features)
    if not parts:
      raise ValueError("ObservationEncoder needs a state_key or at least one image key")
    return nn.Dense(self.width, name="fuse")(nn.gelu(jnp.concatenate(parts, axis=-1)))


class ImageTokenEncoder(nn.Module):
  """Per-camera spatial feature tokens for transformer heads: obs -> (B, N, d_model).

  Each camera's frames (B, H, W, 3) or (B, T, H, W, 3) go through a backbone (``"resnet"`` or
  ``"conv"``, one per camera), a 1x1 projection to ``d_model``, a fixed 2-D sine-cosine position
  embedding over the feature map and a learned embedding per (camera, frame). N is the sum over
  cameras of T * h * w, with (h, w) the backbone's output resolution.
  """
  image_keys: Sequence[str]
  d_model: int = 128
  image_encoder: str = "resnet"
  image_channels: Sequence[int] | None = None

  @nn.compact
  def __call__(self, obs) -> jax.Array:
    _check_image_encoder(self.image_encoder)
    if not self.image_keys:
      raise ValueError("ImageTokenEncoder needs at least one image key")
    tokens = []
    for key in self.image_keys:
      images, history = _frames(get_field(obs, key, "image field"), key)
      kwargs = {} if self.image_channels is None else {"channels": tuple(self.image_channels)}
      if self.image_encoder == "conv":
        backbone = ConvBackbone(name=f"backbone_{key}", **kwargs)
      else:
        backbone = ResNetBackbone(name=f"backbone_{key}", **kwargs)
      features = nn.Conv(self.d_model, (1, 1), name=f"project_{key}")(backbone(images))
      _, h, w, _ = features.shape
      frames = history or 1
      x = features.reshape(-1, frames, h * w, self.d_model)
      x = x + sincos_2d_positions(h, w, self.d_model)[None, None]
      frame_embed = self.param(f"frame_embed_{key}", nn.initializers.normal(0.02), (frames, self.d_model))
      x = x + frame_embed[None, :, None, :]
      tokens.append(x.reshape(x.shape[0], frames * h * w, self.d_model))
    return jnp.concatenate(tokens, axis=1)
