"""Diffusion Policy (Chi et al. 2023): DDPM training, DDIM sampling, 1-D temporal U-Net with FiLM.

Forward process over a chunk a (B, H, A) with noise levels k in [0, K) (K = 100):

    abar_k = prod_{i <= k} (1 - beta_i),   a_k = sqrt(abar_k) a + sqrt(1 - abar_k) eps,

and the denoiser eps_theta(a_k, k, o) is trained to predict eps (masked MSE). Sampling uses DDIM with
eta = 0 (deterministic given the initial noise) on ``ddim_timesteps`` ("leading" spacing):

    a0_hat = (a_k - sqrt(1 - abar_k) eps_theta) / sqrt(abar_k)   (optionally clipped),
    a_prev = sqrt(abar_prev) a0_hat + sqrt(1 - abar_prev) eps_theta,   abar_prev = 1 past the end.

The schedule and sampler functions are pure and independent of the network. EMA of the weights
belongs to the training loop.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vlajax.policies.encoders import ObservationEncoder, augment_images
from vlajax.policies.flow_matching import masked_mse

BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")


def squaredcos_cap_v2_betas(num_steps: int = 100, max_beta: float = 0.999) -> np.ndarray:
  """Cosine schedule (Nichol & Dhariwal 2021; diffusers' ``squaredcos_cap_v2``): (num_steps,) float64.

  ``alpha_bar(t) = cos((t + 0.008) / 1.008 * pi / 2) ** 2`` and
  ``beta_i = min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta)``.
  """
  def alpha_bar(t):
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
  return np.array([min(1.0 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
                   for i in range(num_steps)], np.float64)


def linear_betas(beta_start: float = 1e-4, beta_end: float = 0.02, num_steps: int = 100) -> np.ndarray:
  """DDPM's linear schedule: (num_steps,) evenly spaced from beta_start to beta_end."""
  return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
  """``abar_k = prod_{i <= k} (1 - beta_i)``: (K,) -> (K,)."""
  return np.cumprod(1.0 - np.asarray(betas, np.float64))


def make_betas(schedule: str, num_steps: int = 100, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> np.ndarray:
  """Betas of a named schedule (``"squaredcos_cap_v2"`` ignores beta_start / beta_end, as diffusers does)."""
  if schedule == "squaredcos_cap_v2":
    return squaredcos_cap_v2_betas(num_steps)
  if schedule == "linear":
    return linear_betas(beta_start, beta_end, num_steps)
  raise ValueError(f"unknown beta_schedule {schedule!r}; expected one of {BETA_SCHEDULES}")


def ddim_timesteps(num_train_steps: int, num_inference_steps: int) -> np.ndarray:
  """DDIM timesteps, "leading" spacing, descending: ``arange(n) * (K // n)`` reversed (int64, (n,)).

  E.g. (100, 10) -> [90, 80, ..., 0]; (100, 16) -> [90, 84, ..., 0].
  """
  if not 1 <= num_inference_steps <= num_train_steps:
    raise ValueError(f"num_inference_steps ({num_inference_steps}) must be in 1..num_train_steps "
                     f"({num_train_steps})")
  step_ratio = num_train_steps // num_inference_steps
  return (np.arange(num_inference_steps) * step_ratio)[::-1].astype(np.int64)


def add_noise(actions: jax.Array, noise: jax.Array, abar: jax.Array) -> jax.Array:
  """Forward process ``sqrt(abar) a + sqrt(1 - abar) eps``; actions/noise (B, H, A), abar (B,)."""
  abar = abar.reshape(abar.shape + (1,) * (actions.ndim - abar.ndim)).astype(jnp.float32)
  return jnp.sqrt(abar) * actions + jnp.sqrt(1.0 - abar) * noise


def ddim_step(x: jax.Array, eps: jax.Array, abar_t: jax.Array, abar_prev: jax.Array,
              clip_sample: float | None = 1.0) -> jax.Array:
  """One deterministic DDIM update (eta = 0) from level t to the previous level; any matching shapes.

  ``a0_hat = (x - sqrt(1 - abar_t) eps) / sqrt(abar_t)``, clipped to +-clip_sample unless None,
  then ``sqrt(abar_prev) a0_hat + sqrt(1 - abar_prev) eps``.
  """
  x0 = (x - jnp.sqrt(1.0 - abar_t) * eps) / jnp.sqrt(abar_t)
  if clip_sample is not None:
    x0 = jnp.clip(x0, -clip_sample, clip_sample)
  return jnp.sqrt(abar_prev) * x0 + jnp.sqrt(1.0 - abar_prev) * eps


def ddim_sample(eps_fn: Callable[[jax.Array, jax.Array], jax.Array], noise: jax.Array,
                abar: np.ndarray | jax.Array, num_inference_steps: int = 16,
                clip_sample: float | None = 1.0) -> jax.Array:
  """Deterministic DDIM (eta = 0) from ``noise`` (B, H, A) to a clean chunk (B, H, A).

  Args:
    eps_fn: ``eps_fn(x_k (B, H, A), k (B,) int32) -> predicted noise (B, H, A)``.
    noise: initial sample at the last timestep.
    abar: (K,) ``alphas_cumprod`` of the training schedule.
    num_inference_steps: number of denoiser calls.
    clip_sample: clip the implied clean sample to [-clip_sample, clip_sample]; None for no clipping.
  Returns:
    The denoised chunk, same shape as ``noise``.
  """
  abar = jnp.asarray(abar, jnp.float32)
  num_train_steps = abar.shape[0]
  timesteps = ddim_timesteps(num_train_steps, num_inference_steps)
  previous = timesteps - num_train_steps // num_inference_steps
  abar_t = abar[timesteps]
  abar_prev = jnp.where(previous >= 0, abar[np.maximum(previous, 0)], 1.0)
  batch = noise.shape[0]

  def step(x, inputs):
    t, a_t, a_prev = inputs
    eps = eps_fn(x, jnp.full((batch,), t, jnp.int32)).astype(jnp.float32)
    return ddim_step(x, eps, a_t, a_prev, clip_sample), None

  out, _ = jax.lax.scan(step, noise.astype(jnp.float32),
                        (jnp.asarray(timesteps, jnp.int32), abar_t, abar_prev))
  return out


def timestep_embedding(k: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Transformer-style sine-cosine embedding of integer diffusion steps: (B,) -> (B, dim)."""
  if dim % 2:
    raise ValueError(f"timestep embedding dim must be even, got {dim}")
  half = dim // 2
  frequency = jnp.exp(-math.log(max_period) * jnp.arange(half) / max(half - 1, 1))
  angle = k.astype(jnp.float32)[:, None] * frequency[None, :]
  return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)


class Conv1dBlock(nn.Module):
  """Conv1d -> GroupNorm -> Mish over (B, L, C)."""
  features: int
  kernel_size: int = 5
  num_groups: int = 8

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, (self.kernel_size,), padding="SAME")(x)
    return jax.nn.mish(nn.GroupNorm(num_groups=min(self.num_groups, self.features))(x))


class FiLMResidualBlock1D(nn.Module):
  """Two ``Conv1dBlock`` with FiLM in between (h <- scale(c) * h + bias(c)) and a residual skip.

  x (B, L, C_in), cond (B, D) -> (B, L, features).
  """
  features: int
  kernel_size: int = 5
  num_groups: int = 8

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
    h = Conv1dBlock(self.features, self.kernel_size, self.num_groups)(x)
    scale, bias = jnp.split(nn.Dense(2 * self.features, name="film")(jax.nn.mish(cond)), 2, axis=-1)
    h = scale[:, None, :] * h + bias[:, None, :]
    h = Conv1dBlock(self.features, self.kernel_size, self.num_groups)(h)
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1,), name="skip")(x)
    return h + x


def check_unet_horizon(action_horizon: int, channels: Sequence[int]) -> None:
  """Raises ValueError unless action_horizon is divisible by 2 ** (len(channels) - 1)."""
  factor = 2 ** (len(channels) - 1)
  if action_horizon < 1 or action_horizon % factor:
    raise ValueError(f"action_horizon ({action_horizon}) must be a positive multiple of "
                     f"2 ** (len(channels) - 1) = {factor}: the U-Net with channels {tuple(channels)} "
                     f"halves the horizon {len(channels) - 1} time(s)")


class ConditionalUnet1D(nn.Module):
  """1-D temporal U-Net over the horizon axis: (x_k (B, H, A), k (B,), cond (B, C)) -> eps (B, H, A).

  One level per entry of ``channels`` (two FiLM residual blocks each), halving the horizon between
  levels (stride-2 conv) and doubling it back (transposed conv) with skip connections. Every block
  is conditioned on [step embedding, cond] through FiLM.
  """
  action_dim: int
  channels: Sequence[int] = (64, 128)
  kernel_size: int = 5
  num_groups: int = 8
  step_embed_dim: int = 64

  @nn.compact
  def __call__(self, x: jax.Array, k: jax.Array, cond: jax.Array) -> jax.Array:
    check_unet_horizon(x.shape[1], self.channels)
    step = timestep_embedding(k, self.step_embed_dim)
    step = nn.Dense(self.step_embed_dim)(jax.nn.mish(nn.Dense(4 * self.step_embed_dim)(step)))
    c = jnp.concatenate([step, cond.astype(jnp.float32)], axis=-1)

    def block(features, name):
      return FiLMResidualBlock1D(features, self.kernel_size, self.num_groups, name=name)

    h = x.astype(jnp.float32)
    skips = []
    levels = len(self.channels)
    for i, f in enumerate(self.channels):
      h = block(f, f"down{i}_0")(h, c)
      h = block(f, f"down{i}_1")(h, c)
      if i < levels - 1:
        skips.append(h)
        h = nn.Conv(f, (3,), strides=(2,), padding=((1, 1),), name=f"downsample{i}")(h)
    h = block(self.channels[-1], "mid_0")(h, c)
    h = block(self.channels[-1], "mid_1")(h, c)
    for i in reversed(range(levels - 1)):
      f = self.channels[i]
      h = nn.ConvTranspose(f, (4,), strides=(2,), padding="SAME", name=f"upsample{i}")(h)
      h = jnp.concatenate([h, skips[i]], axis=-1)
      h = block(f, f"up{i}_0")(h, c)
      h = block(f, f"up{i}_1")(h, c)
    h = Conv1dBlock(self.channels[0], self.kernel_size, self.num_groups, name="final_block")(h)
    return nn.Conv(self.action_dim, (1,), name="final_conv")(h)


class DiffusionPolicy(nn.Module):
  """Diffusion Policy as an action head (protocol of ``vlajax.policies.base``).

  ``compute_loss(obs, actions (B, H, A), rng, mask=None) -> (loss, per-example (B,) loss)`` (DDPM,
  epsilon prediction, masked MSE; masked action entries are zeroed before noising so they influence
  nothing) and ``sample_actions(obs, rng, num_inference_steps=None, noise=None) -> (B, H, A)``
  (DDIM, eta = 0). Observations may carry a history axis T (default data: T = 2); the
  ``ObservationEncoder`` flattens it.

  Attributes:
    action_dim: A.
    action_horizon: H (16); must be divisible by 2 ** (len(channels) - 1).
    state_key, image_keys: observation fields (see ``ObservationEncoder``).
    obs_width: width of the observation feature that conditions the U-Net.
    channels, kernel_size, num_groups, step_embed_dim: U-Net sizes.
    num_train_steps: K, DDPM noise levels (100).
    num_inference_steps: DDIM steps (16).
    beta_schedule: ``"squaredcos_cap_v2"`` or ``"linear"`` (beta_start -> beta_end).
    clip_sample: clip of DDIM's implied clean sample (actions are normalized); None for none.
    image_encoder, image_channels: image network (``"resnet"`` or ``"conv"``) and its channels.
    augment, shift_pad: ``random_shift`` of the images in ``compute_loss`` only.
  """
  action_dim: int
  action_horizon: int = 16
  state_key: str | None = "proprio"
  image_keys: Sequence[str] = ()
  obs_width: int = 256
  channels: Sequence[int] = (64, 128)
  kernel_size: int = 5
  num_groups: int = 8
  step_embed_dim: int = 64
  num_train_steps: int = 100
  num_inference_steps: int = 16
  beta_schedule: str = "squaredcos_cap_v2"
  beta_start: float = 1e-4
  beta_end: float = 0.02
  clip_sample: float | None = 1.0
  image_encoder: str = "resnet"
  image_channels: Sequence[int] | None = None
  augment: bool = False
  shift_pad: int = 4

  def __post_init__(self):
    check_unet_horizon(self.action_horizon, self.channels)
    if self.beta_schedule not in BETA_SCHEDULES:
      raise ValueError(f"unknown beta_schedule {self.beta_schedule!r}; expected one of {BETA_SCHEDULES}")
    super().__post_init__()

  def setup(self):
    self.encoder = ObservationEncoder(self.obs_width, self.state_key, tuple(self.image_keys),
                                      self.image_encoder, self.image_channels)
    self.denoiser = ConditionalUnet1D(self.action_dim, tuple(self.channels), self.kernel_size,
                                      self.num_groups, self.step_embed_dim)

  def alphas_cumprod(self) -> np.ndarray:
    """(num_train_steps,) float64 abar of the configured schedule."""
    return alphas_cumprod(make_betas(self.beta_schedule, self.num_train_steps, self.beta_start,
                                     self.beta_end))

  def compute_loss(self, obs, actions, rng, mask=None):
    """DDPM epsilon-prediction loss; returns (scalar masked MSE, per-example (B,) MSE)."""
    noise_rng, step_rng, augment_rng = jax.random.split(rng, 3)
    if self.augment and self.image_keys:
      obs = augment_images(obs, self.image_keys, augment_rng, self.shift_pad)
    actions = actions.astype(jnp.float32)
    if mask is not None:
      actions = jnp.where(jnp.asarray(mask, bool), actions, 0.0)
    noise = jax.random.normal(noise_rng, actions.shape, jnp.float32)
    k = jax.random.randint(step_rng, (actions.shape[0],), 0, self.num_train_steps)
    abar = jnp.asarray(self.alphas_cumprod(), jnp.float32)[k]
    eps = self.denoiser(add_noise(actions, noise, abar), k, self.encoder(obs))
    return masked_mse(eps, noise, mask)

  def sample_actions(self, obs, rng, num_inference_steps: int | None = None, noise=None):
    """DDIM sample (B, H, A) float32 from ``noise`` (default: standard normal drawn from ``rng``)."""
    cond = self.encoder(obs)
    if noise is None:
      noise = jax.random.normal(rng, (cond.shape[0], self.action_horizon, self.action_dim), jnp.float32)
    steps = self.num_inference_steps if num_inference_steps is None else num_inference_steps
    return ddim_sample(lambda x, k: self.denoiser(x, k, cond), noise, self.alphas_cumprod(), steps,
                       self.clip_sample)

  def __call__(self, obs, actions, rng, mask=None):
    return self.compute_loss(obs, actions, rng, mask)
