"""Flow matching over action chunks (pi0 convention: t = 1 is noise, t = 0 is data).

    x_t = t * noise + (1 - t) * actions,     target velocity u = noise - actions,
    t ~ Beta(1.5, 1) * (1 - t_min) + t_min   (more weight on noisy times; never exactly 0),

and sampling integrates dx/dt = v(x_t, t) with Euler steps from t = 1 down to t = 0 (dt = -1/N).
These functions are independent of the network, so the VLA and the plain policy heads share them.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def sample_time(rng: jax.Array, batch_size: int, alpha: float = 1.5, beta: float = 1.0,
                t_min: float = 0.001) -> jnp.ndarray:
  """(B,) flow times from ``Beta(alpha, beta) * (1 - t_min) + t_min``."""
  return jax.random.beta(rng, alpha, beta, (batch_size,)) * (1.0 - t_min) + t_min


def interpolate(actions: jnp.ndarray, noise: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
  """``x_t = t * noise + (1 - t) * actions``; actions/noise (B, H, A), t (B,)."""
  t = t.reshape(t.shape + (1,) * (actions.ndim - t.ndim))
  return t * noise + (1.0 - t) * actions


def target_velocity(actions: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
  """``u = noise - actions`` (d x_t / d t)."""
  return noise - actions


def masked_mse(pred: jnp.ndarray, target: jnp.ndarray,
               mask: jnp.ndarray | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Mean squared error over the valid entries of an action chunk.

  Args:
    pred, target: (B, H, A).
    mask: None (all valid) or broadcastable to (B, H, A), e.g. (B, H, 1) for padded steps past the
      episode end and (B, 1, A) for padded action dimensions; 0/False entries are ignored.
  Returns:
    (scalar mean over valid entries, per-example (B,) mean over that example's valid entries).
  """
  weights = jnp.ones(pred.shape, jnp.float32)
  if mask is not None:
    weights = weights * jnp.asarray(mask, jnp.float32)
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)) * weights
  per_example = err.sum((1, 2)) / jnp.maximum(weights.sum((1, 2)), 1.0)
  return err.sum() / jnp.maximum(weights.sum(), 1.0), per_example


def sincos_time_embedding(t: jnp.ndarray, dim: int, min_period: float = 4e-3,
                          max_period: float = 4.0) -> jnp.ndarray:
  """Sine-cosine embedding of scalar times t (B,) -> (B, dim), periods geometric in [min, max]."""
  if dim % 2:
    raise ValueError(f"time embedding dim must be even, got {dim}")
  fraction = jnp.linspace(0.0, 1.0, dim // 2)
  period = min_period * (max_period / min_period) ** fraction
  angle = t[:, None].astype(jnp.float32) * (2.0 * jnp.pi / period)[None, :]
  return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)


def euler_sample(velocity_fn: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray], noise: jnp.ndarray,
                 num_steps: int = 10) -> jnp.ndarray:
  """Integrates from t = 1 (``noise``, (B, H, A)) to t = 0 with ``num_steps`` Euler steps.

  ``velocity_fn(x_t, t)`` gets t of shape (B,) and returns a (B, H, A) velocity.
  """
  dt = -1.0 / num_steps
  batch = noise.shape[0]

  def step(i, x):
    t = jnp.full((batch,), 1.0 + i * dt, jnp.float32)
    return x + dt * velocity_fn(x, t).astype(x.dtype)

  return jax.lax.fori_loop(0, num_steps, step, noise)


def flow_matching_loss(velocity_fn: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray], actions: jnp.ndarray,
                       rng: jax.Array, mask: jnp.ndarray | None = None):
  """Draws noise and t, evaluates ``velocity_fn(x_t, t)`` and returns (loss, per-example loss)."""
  noise_rng, time_rng = jax.random.split(rng)
  noise = jax.random.normal(noise_rng, actions.shape, jnp.float32)
  t = sample_time(time_rng, actions.shape[0])
  x_t = interpolate(actions, noise, t)
  return masked_mse(velocity_fn(x_t, t), target_velocity(actions, noise), mask)


class VelocityMLP(nn.Module):
  """Residual MLP velocity field over a flattened chunk: (x_t (B, H, A), t (B,), cond (B, C)) -> (B, H, A).

  The time embedding and the conditioning enter every block through FiLM (scale and shift).
  """
  width: int = 256
  depth: int = 3
  time_dim: int = 64

  @nn.compact
  def __call__(self, x_t, t, cond):
    b, horizon, action_dim = x_t.shape
    context = jnp.concatenate([sincos_time_embedding(t, self.time_dim, 1e-2, 4.0), cond], axis=-1)
    context = nn.Dense(self.width)(nn.gelu(nn.Dense(self.width)(context)))
    h = nn.Dense(self.width)(x_t.reshape(b, horizon * action_dim))
    for i in range(self.depth):
      scale, shift = jnp.split(nn.Dense(2 * self.width, name=f"film_{i}")(context), 2, axis=-1)
      y = nn.LayerNorm()(h) * (1.0 + scale) + shift
      h = h + nn.Dense(self.width)(nn.gelu(nn.Dense(self.width)(y)))
    out = nn.Dense(horizon * action_dim, kernel_init=nn.initializers.zeros)(nn.LayerNorm()(h))
    return out.reshape(b, horizon, action_dim)


class FlowMatchingPolicy(nn.Module):
  """Flow-matching action-chunk head over a small observation encoder (no language model).

  Methods follow the action-head protocol of ``vlajax.policies.base``:
  ``compute_loss(obs, actions, rng, mask=None) -> (loss, per-example loss)`` and
  ``sample_actions(obs, rng, num_steps=10) -> (B, H, A)``.
  """
  horizon: int
  action_dim: int
  encoder: nn.Module
  velocity: nn.Module

  def compute_loss(self, obs, actions, rng, mask=None):
    cond = self.encoder(obs)
    return flow_matching_loss(lambda x_t, t: self.velocity(x_t, t, cond), actions, rng, mask)

  def sample_actions(self, obs, rng, num_steps: int = 10, noise=None):
    cond = self.encoder(obs)
    if noise is None:
      noise = jax.random.normal(rng, (cond.shape[0], self.horizon, self.action_dim), jnp.float32)
    return euler_sample(lambda x_t, t: self.velocity(x_t, t, cond), noise, num_steps)

  def __call__(self, obs, actions, rng, mask=None):
    return self.compute_loss(obs, actions, rng, mask)


def make_flow_policy(horizon: int, action_dim: int, width: int = 256, depth: int = 3,
                     state_key: str | None = "state", image_keys=()) -> FlowMatchingPolicy:
  """A ``FlowMatchingPolicy`` with an ``ObservationEncoder`` and a ``VelocityMLP``."""
  from vlajax.policies.encoders import ObservationEncoder  # pylint: disable=import-outside-toplevel
  return FlowMatchingPolicy(horizon, action_dim,
                            ObservationEncoder(width, state_key, tuple(image_keys)),
                            VelocityMLP(width, depth))
