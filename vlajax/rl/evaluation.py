"""One evaluation episode of a batch of fresh envs under a (possibly stateful) policy.

`act(carry, obs, rng) -> (action f32[B, A], carry)` lets planners carry a warm start between control
steps. Each env runs until its first `done` (or the episode length); later steps are not counted.
Returns the mean `eval/episode_return`, `eval/episode_length` and, for every env metric (reward
terms `reward/<term>`, tracking errors, ...), its per-step mean over each env's episode `eval/<name>`.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from vlajax.envs import wrappers


def make_eval_env(env, episode_length: int, action_repeat: int = 1):
  return wrappers.VmapWrapper(wrappers.EpisodeWrapper(env, episode_length, action_repeat))


def evaluate(eval_env, act: Callable, carry: Any, rng: jax.Array, num_envs: int,
             episode_length: int) -> dict:
  k_reset, k_act = jax.random.split(rng)
  env_state = eval_env.reset(jax.random.split(k_reset, num_envs))

  def step(loop_carry, key):
    env_state, policy_carry, alive, ret, length, terms = loop_carry
    action, policy_carry = act(policy_carry, env_state.obs, key)
    env_state = eval_env.step(env_state, action)
    ret = ret + alive * env_state.reward
    length = length + alive
    terms = {k: terms[k] + alive * env_state.metrics[k] for k in terms}
    alive = alive * (1.0 - env_state.done)
    return (env_state, policy_carry, alive, ret, length, terms), None

  zeros = jnp.zeros((num_envs,))
  terms = {k: zeros for k in env_state.metrics}
  init = (env_state, carry, jnp.ones((num_envs,)), zeros, zeros, terms)
  (_, _, _, ret, length, terms), _ = jax.lax.scan(step, init, jax.random.split(k_act, episode_length))
  out = {"eval/episode_return": jnp.mean(ret), "eval/episode_length": jnp.mean(length)}
  out.update({f"eval/{k}": jnp.mean(v / jnp.maximum(length, 1.0)) for k, v in terms.items()})
  return out

