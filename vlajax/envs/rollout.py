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
(`rl/evaluation.py`) averages these. `rollout_on_host` runs the same episodes for policies that
see camera images, rendered at the host boundary after every jitted physics step.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np

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


@flax.struct.dataclass
class _Tally:
  """What `rollout` accumulates per env over an episode (leading axis B on every field)."""
  alive: jax.Array           # f32[B] 1 until the env's first done
  episode_return: jax.Array  # f32[B]
  length: jax.Array          # i32[B]
  first_success: jax.Array   # i32[B] control steps to the first success; -1 until then
  sums: dict                 # {metric: f32[B]}


def _tally_start(env_state) -> _Tally:
  num = env_state.reward.shape[0]
  zeros = jnp.zeros((num,))
  return _Tally(alive=jnp.ones((num,)), episode_return=zeros, length=jnp.zeros((num,), jnp.int32),
                first_success=jnp.full((num,), -1, jnp.int32),
                sums={k: zeros for k in env_state.metrics})


def _tally_step(tally: _Tally, reward, done, metrics: dict, t) -> _Tally:
  """`tally` after control step `t` (0-based) led to `reward`, `done`, `metrics` ([B] each)."""
  alive = tally.alive
  first_success = tally.first_success
  if "success" in metrics:
    now = (alive > 0) & (metrics["success"] > 0) & (first_success < 0)
    first_success = jnp.where(now, t + 1, first_success)
  return _Tally(alive=alive * (1.0 - done), episode_return=tally.episode_return + alive * reward,
                length=tally.length + alive.astype(jnp.int32), first_success=first_success,
                sums={k: tally.sums[k] + alive * metrics[k] for k in tally.sums})


def _episodes(tally: _Tally, instruction, trace) -> Episodes:
  means = {k: v / jnp.maximum(tally.length, 1).astype(v.dtype) for k, v in tally.sums.items()}
  return Episodes(success=tally.first_success >= 0, episode_return=tally.episode_return,
                  length=tally.length, time_to_success=tally.first_success, metrics=means,
                  instruction=jnp.asarray(instruction, jnp.int32), trace=trace)


def _instruction(env_state):
  num = env_state.reward.shape[0]
  return env_state.info.get("instruction", jnp.full((num,), -1, jnp.int32))


def rollout(batched_env, act: Act, carry: Any, keys: jax.Array, episode_length: int,
            rng: jax.Array, observe: Callable = lambda state: state.obs,
            record: Callable | None = None) -> Episodes:
  """Runs `act` from the states `batched_env.reset(keys)` for `episode_length` control steps
  (traceable: jit it, or call it inside a jitted function). `rng` drives the policy's sampling;
  `observe(state)` is what the policy sees (default the observation dict; `full_state` for
  scripted experts); `record(state)`, if given, is traced after every step into
  `Episodes.trace`."""
  env_state = batched_env.reset(keys)

  def step(loop, inputs):
    t, key = inputs
    env_state, policy_carry, tally = loop
    action, policy_carry = act(policy_carry, observe(env_state), key)
    env_state = batched_env.step(env_state, action)
    tally = _tally_step(tally, env_state.reward, env_state.done, env_state.metrics, t)
    traced = record(env_state) if record is not None else None
    return (env_state, policy_carry, tally), traced

  inputs = (jnp.arange(episode_length), jax.random.split(rng, episode_length))
  (_, _, tally), trace = jax.lax.scan(step, (env_state, carry, _tally_start(env_state)), inputs)
  return _episodes(tally, _instruction(env_state), trace)


def rollout_on_host(camera_env, act: Act, carry: Any, keys: jax.Array, episode_length: int,
                    rng: jax.Array, observe: Callable = lambda state: state.obs,
                    record: Callable | None = None) -> Episodes:
  """`rollout` for policies that see camera images: a Python loop over control steps of
  `camera_env` (`envs.camera_wrapper.CameraWrapper` around `make_batched_env(...)`), which steps
  the jitted physics and renders `obs["images"]` on the host after every step. Pass a jitted
  `act` (it receives the images as host arrays). Same keys, same `rng` split and the same
  per-episode bookkeeping as `rollout`, so a state policy gets the same `Episodes` from both
  (up to float reassociation between the two programs)."""
  env_state = camera_env.reset(keys)
  tally = _tally_start(env_state)
  instruction = _instruction(env_state)
  step_keys = jax.random.split(rng, episode_length)
  traced = []
  for t in range(episode_length):
    action, carry = act(carry, observe(env_state), step_keys[t])
    env_state = camera_env.step(env_state, action)
    tally = _tally_step_jit(tally, env_state.reward, env_state.done, env_state.metrics, t)
    if record is not None:
      traced.append(jax.device_get(record(env_state)))
  trace = jax.tree.map(lambda *xs: np.stack(xs), *traced) if traced else None
  return _episodes(tally, instruction, trace)


_tally_step_jit = jax.jit(_tally_step)
