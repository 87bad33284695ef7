"""Closed-loop episodes of a batched env under a policy, with per-episode outcomes.

The policy protocol is `act(carry, obs, rng) -> (action f32[B, A], carry)` (a planner carries its
warm start; `stateless(policy)` adapts a `policy(obs) -> action`; `policies.chunking` adapts
chunked policies). `rollout` is one `lax.scan` over control steps of a batched env
(`make_batched_env`: `VmapWrapper(EpisodeWrapper(env))`); trace it under jit so state policies run
fully on the device. An env's reset is a pure function of its key, so the same keys give the same
initial states to every policy (`vlajax.eval.closed_loop` draws fixed seeded sets of them).

Each env counts until its first `done` or the episode length. Per episode (`Episodes`): success
(the env's `metrics["success"]` at any counted step; False for envs without one), return, length,
time to success (control steps to the first success, -1 if none), the instruction index of a
language task (`info["instruction"]` at reset; -1 for envs without one) and the per-step mean of
every env metric. `record(state) -> pytree` keeps a per-step trace (e.g. `render_trace`, what a
video of the episode needs) in `Episodes.trace`, each leaf [T, N, ...]. RL evaluation
(`rl/evaluation.py`) averages these.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp

from vlajax.envs import wrappers

Act = Callable[[Any, dict, jax.Array], tuple[jax.Array, Any]]


@flax.struct.dataclass
class Episodes:
  """Outcomes of N closed-loop episodes (leading axis N on every field)."""
  success: jax.Array           # bool[N]
  episode_return: jax.Array    # f32[N]
  length: jax.Array            # i32[N] control steps until the first done, or the episode length
  time_to_success: jax.Array   # i32[N] control steps to the first success; -1 if none
  metrics: dict                # {name: f32[N]} per-step mean of each env metric over the episode
  instruction: jax.Array       # i32[N] the episode's instruction index; -1 if the env has none
  trace: Any = None            # `record(state)` after each control step, leaves [T, N, ...]


def make_batched_env(env, episode_length: int, action_repeat: int = 1):
  """The batched env `rollout` steps: `VmapWrapper(EpisodeWrapper(env, ...))`."""
  return wrappers.VmapWrapper(wrappers.EpisodeWrapper(env, episode_length, action_repeat))


def stateless(policy: Callable[[dict], jax.Array]) -> Act:
  """`policy(obs) -> action` as an `act(carry, obs, rng)` with an unused carry."""
  return lambda carry, obs, rng: (policy(obs), carry)


def full_state(state):
  """An `observe` for privileged policies (scripted experts): the whole batched env `State`."""
  return state


def render_trace(state) -> dict:
  """A `record` for videos: what `vlajax.envs.render.BatchRenderer` draws a state from
  (`qpos`, `mocap_pos`, `mocap_quat`), plus the per-step success flag (zeros if none)."""
  data = state.data
  success = state.metrics.get("success", jnp.zeros_like(state.reward))
  return {"qpos": data.qpos, "mocap_pos": data.mocap_pos, "mocap_quat": data.mocap_quat,
          "success": success}


def rollout(batched_env, act: Act, carry: Any, keys: jax.Array, episode_length: int,
            rng: jax.Array, observe: Callable = lambda state: state.obs,
            record: Callable | None = None) -> Episodes:
  """Runs `act` from the states `batched_env.reset(keys)` for `episode_length` control steps
  (traceable: jit it, or call it inside a jitted function). `rng` drives the policy's sampling;
  `observe(state)` is what the policy sees (default the observation dict; `full_state` for
  scripted experts); `record(state)`, if given, is traced after every step into
  `Episodes.trace`."""
  env_state = batched_env.reset(keys)
  num = keys.shape[0]
  has_success = "success" in env_state.metrics

  def step(loop, inputs):
    t, key = inputs
    env_state, policy_carry, alive, ret, length, first_success, sums = loop
    action, policy_carry = act(policy_carry, observe(env_state), key)
    env_state = batched_env.step(env_state, action)
    ret = ret + alive * env_state.reward
    length = length + alive.astype(jnp.int32)
    sums = {k: sums[k] + alive * env_state.metrics[k] for k in sums}
    if has_success:
      now = (alive > 0) & (env_state.metrics["success"] > 0) & (first_success < 0)
      first_success = jnp.where(now, t + 1, first_success)
    alive = alive * (1.0 - env_state.done)
    traced = record(env_state) if record is not None else None
    return (env_state, policy_carry, alive, ret, length, first_success, sums), traced

  zeros = jnp.zeros((num,))
  sums = {k: zeros for k in env_state.metrics}
  init = (env_state, carry, jnp.ones((num,)), zeros, jnp.zeros((num,), jnp.int32),
          jnp.full((num,), -1, jnp.int32), sums)
  inputs = (jnp.arange(episode_length), jax.random.split(rng, episode_length))
  instruction = env_state.info.get("instruction", jnp.full((num,), -1, jnp.int32))
  (_, _, _, ret, length, first_success, sums), trace = jax.lax.scan(step, init, inputs)
  means = {k: v / jnp.maximum(length, 1).astype(v.dtype) for k, v in sums.items()}
  return Episodes(success=first_success >= 0, episode_return=ret, length=length,
                  time_to_success=first_success, metrics=means,
                  instruction=jnp.asarray(instruction, jnp.int32), trace=trace)
