"""ACT: Action Chunking with Transformers (Zhao et al. 2023), a CVAE over action chunks.

Training: a style encoder (transformer over [CLS, proprio, a_1..a_H]) gives q(z | a, q) =
N(mu, diag(exp(logvar))); z = mu + sigma * eps. The policy, a transformer encoder over
[z, proprio, image feature tokens] and a decoder whose H learned queries cross-attend to that memory,
predicts the chunk in parallel. Loss = masked L1 + kl_weight * KL(q || N(0, I)), kl_weight = 10.

Inference: z = 0 (the prior mean), so ``sample_actions`` is deterministic. At deployment ACT
re-predicts every step and averages the overlapping chunks with ``vlajax.policies.chunking``
(``temporal_ensemble``, weights exp(-m * i), m = 0.01).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlajax.policies.encoders import ImageTokenEncoder, augment_images, flatten_state, get_field
from vlajax.policies.regression import masked_l1


def gaussian_kl(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example: (B, Z), (B, Z) -> (B,).

  ``0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)``.
  """
  mu = mu.astype(jnp.float32)
  logvar = logvar.astype(jnp.float32)
  return 0.5 * jnp.sum(jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


class EncoderLayer(nn.Module):
  """Pre-norm transformer encoder layer: x (B, N, D), optional key mask (B, N) -> (B, N, D)."""
  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
    mask = None if key_mask is None else key_mask[:, None, None, :]
    y = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(self.num_heads, name="self_attention")(y, y, mask=mask)
    y = nn.LayerNorm()(x)
    return x + nn.Dense(x.shape[-1])(nn.gelu(nn.Dense(self.mlp_dim)(y)))


class DecoderLayer(nn.Module):
  """Pre-norm transformer decoder layer: queries (B, H, D) attend to themselves, then to memory (B, N, D)."""
  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x: jax.Array, memory: jax.Array) -> jax.Array:
    y = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(self.num_heads, name="self_attention")(y, y)
    y = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(self.num_heads, name="cross_attention")(y, memory)
    y = nn.LayerNorm()(x)
    return x + nn.Dense(x.shape[-1])(nn.gelu(nn.Dense(self.mlp_dim)(y)))


class TransformerEncoder(nn.Module):
  """A stack of ``EncoderLayer`` and a final LayerNorm: (B, N, D) -> (B, N, D)."""
  num_layers: int
  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
    for i in range(self.num_layers):
      x = EncoderLayer(self.num_heads, self.mlp_dim, name=f"layer_{i}")(x, key_mask)
    return nn.LayerNorm(name="final_norm")(x)


class TransformerDecoder(nn.Module):
  """A stack of ``DecoderLayer`` and a final LayerNorm: (B, H, D), (B, N, D) -> (B, H, D)."""
  num_layers: int
  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x: jax.Array, memory: jax.Array) -> jax.Array:
    for i in range(self.num_layers):
      x = DecoderLayer(self.num_heads, self.mlp_dim, name=f"layer_{i}")(x, memory)
    return nn.LayerNorm(name="final_norm")(x)


def _step_mask(mask: jax.Array | None, shape: tuple[int, int, int]) -> tuple[jax.Array, jax.Array | None]:
  """mask broadcastable to (B, H, A) -> (float entry weights (B, H, A), bool valid steps (B, H))."""
  if mask is None:
    return jnp.ones(shape, jnp.float32), None
  weights = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), shape)
  return weights, jnp.any(weights > 0, axis=-1)


class ACTPolicy(nn.Module):
  """ACT as an action head (protocol of ``vlajax.policies.base``).

  ``compute_loss(obs, actions (B, H, A), rng, mask=None) -> (loss, per-example (B,) loss)``, with
  the per-example loss the per-example total (L1 + kl_weight * KL); ``sample_actions(obs, rng=None,
  z=None) -> (B, H, A)``, deterministic with z = 0 unless a (B, latent_dim) ``z`` is given.

  Attributes:
    action_dim: A.
    action_horizon: H, the chunk length (ACT's paper uses 100 at 50 Hz).
    state_key: proprio field (B, S) or (B, T, S) (history flattened into one token); None for none.
    image_keys: camera fields (B, [T,] H, W, 3), turned into spatial tokens by ``ImageTokenEncoder``.
    d_model, num_heads, mlp_dim: transformer sizes.
    num_style_layers, num_encoder_layers, num_decoder_layers: depths of the CVAE style encoder,
      the policy's encoder and its decoder.
    latent_dim: size of z.
    kl_weight: beta on the KL term.
    image_encoder, image_channels: the token backbone (``"resnet"`` or ``"conv"``) and its channels.
    augment, shift_pad: ``random_shift`` of the images in ``compute_loss`` only.
  """
  action_dim: int
  action_horizon: int = 100
  state_key: str | None = "proprio"
  image_keys: Sequence[str] = ()
  d_model: int = 128
  num_heads: int = 4
  mlp_dim: int = 512
  num_style_layers: int = 2
  num_encoder_layers: int = 2
  num_decoder_layers: int = 2
  latent_dim: int = 32
  kl_weight: float = 10.0
  image_encoder: str = "resnet"
  image_channels: Sequence[int] | None = None
  augment: bool = False
  shift_pad: int = 4

  def setup(self):
    if self.state_key is None and not self.image_keys:
      raise ValueError("ACTPolicy needs a state_key or at least one image key")
    d = self.d_model
    init = nn.initializers.normal(0.02)
    # CVAE style encoder q(z | actions, proprio).
    self.style_cls = self.param("style_cls", init, (1, 1, d))
    self.style_action_proj = nn.Dense(d)
    self.style_state_proj = nn.Dense(d)
    self.style_positions = self.param("style_positions", init, (1, 2 + self.action_horizon, d))
    self.style_encoder = TransformerEncoder(self.num_style_layers, self.num_heads, self.mlp_dim)
    # Zero-initialised so that training starts at the prior (KL = 0) instead of a KL of tens of nats.
    self.latent_proj = nn.Dense(2 * self.latent_dim, kernel_init=nn.initializers.zeros)
    # Policy: encoder over [z, proprio, image tokens], decoder with H learned queries.
    self.z_proj = nn.Dense(d)
    self.state_proj = nn.Dense(d)
    self.token_positions = self.param("token_positions", init, (1, 2, d))
    if self.image_keys:
      self.image_tokens = ImageTokenEncoder(tuple(self.image_keys), d, self.image_encoder,
                                            self.image_channels)
    self.encoder = TransformerEncoder(self.num_encoder_layers, self.num_heads, self.mlp_dim)
    self.queries = self.param("queries", init, (1, self.action_horizon, d))
    self.decoder = TransformerDecoder(self.num_decoder_layers, self.num_heads, self.mlp_dim)
    self.action_out = nn.Dense(self.action_dim)

  def _proprio(self, obs) -> jax.Array | None:
    return None if self.state_key is None else flatten_state(get_field(obs, self.state_key))

  def posterior(self, obs, actions, mask=None) -> tuple[jax.Array, jax.Array]:
    """Style encoder: (mu, logvar), each (B, latent_dim), from the chunk (B, H, A) and proprio.

    Masked entries are zeroed and fully padded steps are hidden from attention, so neither reaches z.
    """
    b = actions.shape[0]
    weights, valid_steps = _step_mask(mask, actions.shape)
    tokens = [jnp.broadcast_to(self.style_cls, (b, 1, self.d_model))]
    key_mask = [jnp.ones((b, 1), bool)]
    state = self._proprio(obs)
    if state is not None:
      tokens.append(self.style_state_proj(state)[:, None])
      key_mask.append(jnp.ones((b, 1), bool))
    tokens.append(self.style_action_proj(actions.astype(jnp.float32) * weights))
    key_mask.append(jnp.ones(actions.shape[:2], bool) if valid_steps is None else valid_steps)
    x = jnp.concatenate(tokens, axis=1)
    positions = self.style_positions if state is not None else jnp.concatenate(
        [self.style_positions[:, :1], self.style_positions[:, 2:]], axis=1)
    x = self.style_encoder(x + positions, jnp.concatenate(key_mask, axis=1))
    mu, logvar = jnp.split(self.latent_proj(x[:, 0]), 2, axis=-1)
    return mu, logvar

  def decode(self, obs, z: jax.Array) -> jax.Array:
    """Policy: observation and latent z (B, latent_dim) -> chunk (B, H, A)."""
    b = z.shape[0]
    tokens = [self.z_proj(z)[:, None] + self.token_positions[:, 0:1]]
    state = self._proprio(obs)
    if state is not None:
      tokens.append(self.state_proj(state)[:, None] + self.token_positions[:, 1:2])
    if self.image_keys:
      tokens.append(self.image_tokens(obs))
    memory = self.encoder(jnp.concatenate(tokens, axis=1))
    queries = jnp.broadcast_to(self.queries, (b, self.action_horizon, self.d_model))
    return self.action_out(self.decoder(queries, memory))

  def compute_loss(self, obs, actions, rng, mask=None):
    """Masked L1 + kl_weight * KL; returns (scalar loss, per-example (B,) total)."""
    z_rng, augment_rng = jax.random.split(rng)
    if self.augment and self.image_keys:
      obs = augment_images(obs, self.image_keys, augment_rng, self.shift_pad)
    mu, logvar = self.posterior(obs, actions, mask)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(z_rng, mu.shape, mu.dtype)
    l1, l1_per_example = masked_l1(self.decode(obs, z), actions, mask)
    kl = gaussian_kl(mu, logvar)
    return l1 + self.kl_weight * kl.mean(), l1_per_example + self.kl_weight * kl

  def sample_actions(self, obs, rng=None, z=None):
    """(B, H, A) float32 chunk with z = 0 (prior mean) unless ``z`` (B, latent_dim) is given."""
    del rng
    if z is None:
      batch = get_field(obs, self.state_key or self.image_keys[0]).shape[0]
      z = jnp.zeros((batch, self.latent_dim), jnp.float32)
    return self.decode(obs, z).astype(jnp.float32)

  def __call__(self, obs, actions, rng, mask=None):
    return self.compute_loss(obs, actions, rng, mask)
