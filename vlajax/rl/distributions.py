"""Tanh-squashed diagonal Gaussian: a = tanh(u), u ~ N(mean, std).

Rollouts store the pre-tanh sample `u` so that log-probabilities can be recomputed exactly.
Shapes: `mean, std, u: f32[..., A]`; log-probabilities and entropies: f32[...].
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)  # a Python float: importing must not start a JAX backend


def params_from_logits(logits: jax.Array, min_std: float = 1e-3, std_scale: float = 1.0):
  """Splits f32[..., 2A] into mean and a positive std (softplus + min_std)."""
  mean, raw = jnp.split(logits, 2, axis=-1)
  return mean, (jax.nn.softplus(raw) + min_std) * std_scale


def sample_raw(rng: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  return mean + std * jax.random.normal(rng, mean.shape)


def squash(u: jax.Array) -> jax.Array:
  return jnp.tanh(u)


def _log_det_jacobian(u: jax.Array) -> jax.Array:
  """log |d tanh(u)/du| summed over actions, in a numerically stable form."""
  return jnp.sum(2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def log_prob(mean: jax.Array, std: jax.Array, u: jax.Array) -> jax.Array:
  """log π(tanh(u)) = log N(u; mean, std) − log |det J_tanh(u)|."""
  z = (u - mean) / std
  normal = jnp.sum(-0.5 * z ** 2 - jnp.log(std) - 0.5 * _LOG_2PI, axis=-1)
  return normal - _log_det_jacobian(u)


def entropy(mean: jax.Array, std: jax.Array, rng: jax.Array) -> jax.Array:
  """Single-sample estimate: Gaussian entropy + E[log |det J_tanh(u)|]."""
  normal = jnp.sum(0.5 + 0.5 * _LOG_2PI + jnp.log(std), axis=-1)
  return normal + _log_det_jacobian(sample_raw(rng, mean, std))


def mode(mean: jax.Array) -> jax.Array:
  """Deterministic action for evaluation and deployment."""
  return jnp.tanh(mean)
