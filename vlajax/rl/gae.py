"""Generalized advantage estimation with termination vs. truncation handled separately.

Inputs are time-major, f32[T, B]: `rewards`, `values` (V(s_t)), `next_values` (V of the true next
observation s_{t+1}, i.e. the final observation before an auto-reset), `dones` (episode ended at t,
by termination or time limit) and `truncations` (ended by time limit only).

A terminal step bootstraps nothing. A truncated step bootstraps from V(s_{t+1}) when
`bootstrap_on_timeout`; otherwise it is treated as unknowable and masked out of the loss (returned
`mask` is 0 there). In both cases the advantage trace is cut at every episode end.

`lambda_next_advantage` is brax PPO's policy advantage: A_t = r_t + γ G^λ_{t+1} − V(s_t), the
one-step advantage against the next step's λ-return instead of the λ-return minus V (GAE); where
the episode ended at t it bootstraps from `next_values` (0 after a termination).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards, values, next_values, dones, truncations, gamma: float, lam: float,
        bootstrap_on_timeout: bool = True):
  """Returns (advantages, returns, mask), each f32[T, B]."""
  terminations = dones * (1.0 - truncations)
  if bootstrap_on_timeout:
    mask = jnp.ones_like(rewards)
    continuing = 1.0 - terminations
  else:
    mask = 1.0 - truncations
    continuing = 1.0 - dones
  deltas = (rewards + gamma * continuing * next_values - values) * mask

  def backward(carry, xs):
    delta, done, m = xs
    advantage = delta + gamma * lam * (1.0 - done) * carry * m
    return advantage, advantage

  _, advantages = jax.lax.scan(backward, jnp.zeros_like(rewards[0]),
                               (deltas, dones, mask), reverse=True)
  return advantages, advantages + values, mask


def lambda_next_advantage(rewards, values, next_values, returns, dones, truncations, mask,
                          gamma: float, bootstrap_on_timeout: bool = True):
  """brax's policy advantage from `gae`'s `returns` (the λ-returns G^λ) and `mask`; f32[T, B]."""
  terminations = dones * (1.0 - truncations)
  continuing = 1.0 - terminations if bootstrap_on_timeout else 1.0 - dones
  next_return = jnp.concatenate([returns[1:], next_values[-1:]], axis=0)
  next_return = jnp.where(dones > 0, next_values, next_return)
  return (rewards + gamma * continuing * next_return - values) * mask
