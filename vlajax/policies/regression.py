"""Plain action-chunk regression: observation encoder -> MLP -> (B, H, A), L1 or MSE loss.

The unimodal baseline every generative head is compared against: it predicts the (conditional)
median (L1) or mean (MSE) chunk, so on multimodal demonstrations it averages the modes.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlajax.policies.encoders import MLP, ObservationEncoder, augment_images
from vlajax.policies.flow_matching import masked_mse

LOSSES = ("l1", "mse")


def masked_l1(pred: jax.Array, target: jax.Array,
              mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Mean absolute error over the valid entries of an action chunk (the L1 twin of ``masked_mse``).

  Args:
    pred: (B, H, A) prediction.
    target: (B, H, A) target.
    mask: None (all valid) or broadcastable to (B, H, A); 0/False entries are ignored.
  Returns:
    (scalar mean over valid entries, per-example (B,) mean over that example's valid entries).
  """
  weights = jnp.ones(pred.shape, jnp.float32)
  if mask is not None:
    weights = weights * jnp.asarray(mask, jnp.float32)
  err = jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32)) * weights
  per_example = err.sum((1, 2)) / jnp.maximum(weights.sum((1, 2)), 1.0)
  return err.sum() / jnp.maximum(weights.sum(), 1.0), per_example


def chunk_loss(kind: str, pred: jax.Array, target: jax.Array,
               mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """``masked_l1`` (kind ``"l1"``) or ``masked_mse`` (``"mse"``) of (B, H, A) chunks."""
  if kind == "l1":
    return masked_l1(pred, target, mask)
  if kind == "mse":
    return masked_mse(pred, target, mask)
  raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")


class RegressionPolicy(nn.Module):
  """Deterministic chunk regressor following the action-head protocol (``vlajax.policies.base``).

  ``compute_loss(obs, actions (B, H, A), rng, mask=None) -> (loss, per-example (B,) loss)`` and
  ``sample_actions(obs, rng=None) -> (B, H, A)`` (the rng is ignored: the policy is deterministic).

  Attributes:
    action_dim: A, the action size.
    action_horizon: H, the chunk length.
    state_key: observation field with the state (B, S) or (B, T, S); None for none.
    image_keys: image fields (B, [T,] H, W, 3).
    width: encoder and hidden width.
    depth: hidden layers of the MLP after the encoder.
    loss: ``"l1"`` or ``"mse"``.
    image_encoder: ``"conv"`` or ``"resnet"`` (see ``ObservationEncoder``).
    image_channels: image network channels; None for its default.
    augment: apply ``random_shift`` to the images in ``compute_loss`` (never when sampling).
    shift_pad: maximum random shift in pixels.
  """
  action_dim: int
  action_horizon: int = 16
  state_key: str | None = "proprio"
  image_keys: Sequence[str] = ()
  width: int = 256
  depth: int = 2
  loss: str = "l1"
  image_encoder: str = "conv"
  image_channels: Sequence[int] | None = None
  augment: bool = False
  shift_pad: int = 4

  def setup(self):
    if self.loss not in LOSSES:
      raise ValueError(f"unknown loss {self.loss!r}; expected one of {LOSSES}")
    self.encoder = ObservationEncoder(self.width, self.state_key, tuple(self.image_keys),
                                      self.image_encoder, self.image_channels)
    self.head = MLP((self.width,) * self.depth + (self.action_horizon * self.action_dim,))

  def predict(self, obs) -> jax.Array:
    """The predicted chunk (B, H, A)."""
    out = self.head(nn.gelu(self.encoder(obs)))
    return out.reshape(-1, self.action_horizon, self.action_dim)

  def compute_loss(self, obs, actions, rng, mask=None):
    """Masked L1/MSE between ``predict(obs)`` and ``actions`` (B, H, A); returns (loss, (B,) loss)."""
    if self.augment and self.image_keys:
      obs = augment_images(obs, self.image_keys, rng, self.shift_pad)
    return chunk_loss(self.loss, self.predict(obs), actions, mask)

  def sample_actions(self, obs, rng=None):
    """(B, H, A) float32 chunk; ``rng`` is ignored."""
    del rng
    return self.predict(obs).astype(jnp.float32)

  def __call__(self, obs, actions, rng, mask=None):
    return self.compute_loss(obs, actions, rng, mask)
