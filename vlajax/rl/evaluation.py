"""RL evaluation: one episode of a batch of fresh envs under a (possibly stateful) policy, averaged.

`act(carry, obs, rng) -> (action f32[B, A], carry)` lets planners carry a warm start between control
steps. The episodes are `vlajax.envs.rollout.rollout`'s (each env counts until its first `done` or
the episode length). Returns the mean `eval/episode_return`, `eval/episode_length`, and for every env
metric (reward terms `reward/<term>`, tracking errors, success, ...) its per-step mean over each
env's episode `eval/<name>`; envs with a success signal also give `eval/success_rate`.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from vlajax.envs import rollout as rollout_lib


def make_eval_env(env, episode_length: int, action_repeat: int = 1):
  return rollout_lib.make_batched_env(env, episode_length, action_repeat)


def evaluate(eval_env, act: Callable, carry: Any, rng: jax.Array, num_envs: int,
             episode_length: int) -> dict:
  k_reset, k_act = jax.random.split(rng)
  episodes = rollout_lib.rollout(eval_env, act, carry, jax.random.split(k_reset, num_envs),
                                 episode_length, k_act)
  out = {"eval/episode_return": jnp.mean(episodes.episode_return),
         "eval/episode_length": jnp.mean(episodes.length.astype(jnp.float32))}
  out.update({f"eval/{k}": jnp.mean(v) for k, v in episodes.metrics.items()})
  if "success" in episodes.metrics:
    out["eval/success_rate"] = jnp.mean(episodes.success.astype(jnp.float32))
  return out
