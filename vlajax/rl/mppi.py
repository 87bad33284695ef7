"""MPPI planning over action sequences (TD-MPC2's variant), for one env; vmap it over a batch.

Given a score function over candidate plans, each iteration samples Gaussian plans around the
current mean (plus fixed plans from a policy prior), keeps the `num_elites` best, and moves the
mean/std to their softmax-weighted statistics with weights exp(temperature · (score − max score))
(TD-MPC2's form of the MPPI weighting). The executed action is the first step of one elite, drawn
with probability proportional to its weight, plus exploration noise with the final std.

Shapes: plans `f32[horizon, action_size]` in [-1, 1]; `score_fn(plans: f32[n, H, A], key) -> f32[n]`
(`key` fresh per iteration, for stochastic scores such as TD-MPC's random pair of Q heads);
`prior_plans: f32[num_prior, H, A]`.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct


def default_config() -> ml_collections.ConfigDict:
  """TD-MPC2's planner defaults (the horizon is the shape of the initial mean)."""
  return ml_collections.ConfigDict({
      "iterations": 6,
      "num_samples": 512,
      "num_elites": 64,
      "num_prior_samples": 24,   # plans drawn from the policy prior (TD-MPC2: num_pi_trajs)
      "temperature": 0.5,
      "min_std": 0.05,
      "max_std": 2.0,
  })


def validate(config: ml_collections.ConfigDict) -> None:
  if not 0 < config.num_elites <= config.num_samples:
    raise ValueError(f"mppi.num_elites ({config.num_elites}) must be in [1, num_samples "
                     f"({config.num_samples})]")
  if not 0 <= config.num_prior_samples < config.num_samples:
    raise ValueError(f"mppi.num_prior_samples ({config.num_prior_samples}) must be below "
                     f"num_samples ({config.num_samples})")
  if config.iterations < 1:
    raise ValueError(f"mppi.iterations ({config.iterations}) must be positive")
  if not 0 < config.min_std <= config.max_std:
    raise ValueError(f"mppi.min_std ({config.min_std}) must be in (0, max_std ({config.max_std})]")


@struct.dataclass
class Plan:
  action: jax.Array   # f32[A], the action to execute
  mean: jax.Array     # f32[H, A], the final plan mean (warm start for the next control step)
  std: jax.Array      # f32[H, A]
  score: jax.Array    # f32[], best elite score of the last iteration


def shift(mean: jax.Array) -> jax.Array:
  """Warm start: the previous plan advanced by one step, its last step zero."""
  return jnp.concatenate([mean[1:], jnp.zeros_like(mean[:1])], axis=0)


def plan(config: ml_collections.ConfigDict, rng: jax.Array, score_fn: Callable[[jax.Array, jax.Array], jax.Array],
         init_mean: jax.Array, prior_plans: jax.Array | None = None, explore: bool = True) -> Plan:
  """Runs `config.iterations` MPPI iterations from `init_mean: f32[H, A]`."""
  horizon, action_size = init_mean.shape
  num_prior = 0 if prior_plans is None else prior_plans.shape[0]
  num_noisy = config.num_samples - num_prior

  def iteration(carry, key):
    mean, std, _ = carry
    k_noise, k_score = jax.random.split(key)
    noise = jax.random.normal(k_noise, (num_noisy, horizon, action_size))
    plans = jnp.clip(mean[None] + std[None] * noise, -1.0, 1.0)
    if num_prior:
      plans = jnp.concatenate([prior_plans, plans], axis=0)
    scores = score_fn(plans, k_score)
    scores = jnp.where(jnp.isfinite(scores), scores, -jnp.inf)
    elite_scores, elite_idx = jax.lax.top_k(scores, config.num_elites)
    elites = plans[elite_idx]
    weights = jax.nn.softmax(config.temperature * (elite_scores - elite_scores[0]))
    mean = jnp.einsum("e,eha->ha", weights, elites)
    var = jnp.einsum("e,eha->ha", weights, (elites - mean[None]) ** 2)
    std = jnp.clip(jnp.sqrt(var), config.min_std, config.max_std)
    return (mean, std, (elites, weights, elite_scores[0])), None

  k_iter, k_pick, k_noise = jax.random.split(rng, 3)
  std0 = jnp.full((horizon, action_size), config.max_std)
  dummy = (jnp.zeros((config.num_elites, horizon, action_size)), jnp.zeros((config.num_elites,)),
           jnp.zeros(()))
  (mean, std, (elites, weights, best)), _ = jax.lax.scan(
      iteration, (init_mean, std0, dummy), jax.random.split(k_iter, config.iterations))
  chosen = elites[jax.random.categorical(k_pick, jnp.log(weights + 1e-30))]
  action = chosen[0]
  if explore:
    action = action + std[0] * jax.random.normal(k_noise, action.shape)
  return Plan(action=jnp.clip(action, -1.0, 1.0), mean=mean, std=std, score=best)
