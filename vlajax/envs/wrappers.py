"""Training wrappers: episode length / truncation / action repeat, vmap, and auto-reset.

`wrap_for_training(env, episode_length, action_repeat)` gives the batched env every learner uses:

  reset(keys: u32[B, 2]) -> State with a leading batch axis B on every leaf
  step(state, action: f32[B, A]) -> State

Auto-reset gives the envs that finished a *fresh* initial state (new key, new DR draw using the
ranges in the state) rather than replaying a cached first state. With `reset_refresh=1` it draws one
at every step where some env finished (a batched reset, ~15 % of a quadruped step); with
`reset_refresh=K > 1` it keeps a pool of one fresh initial state per env, redrawn every K steps, and
finished envs take theirs from the pool (an env that ends twice within K steps starts from the same
draw twice). The observation that ended the episode is kept in `info["final_obs"]` so learners can
bootstrap from it.

Selects between two states go through `backend.select_data` for the physics data, so they work on
Warp's Data too (its contact buffer is shared by the batch, not per world); `VmapWrapper.reset`
declares its batch size (`backend.num_worlds`) so Warp sizes that buffer for the whole batch.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from vlajax.envs import backend
from vlajax.envs.base import Env, State, supports_dr


class Wrapper:
  """Forwards everything it does not override to the wrapped env."""

  def __init__(self, env):
    self.env = env

  def reset(self, rng: jax.Array) -> State:
    return self.env.reset(rng)

  def step(self, state: State, action: jax.Array) -> State:
    return self.env.step(state, action)

  @property
  def unwrapped(self) -> Env:
    return self.env.unwrapped

  def __getattr__(self, name: str) -> Any:
    if name == "env":
      raise AttributeError(name)
    return getattr(self.env, name)


def _select_state(pred: jax.Array, on_true: State, on_false: State) -> State:
  """One env's `on_true` where `pred` (bool[]) else `on_false`; the data via `backend.select_data`
  (Warp's shared buffers come from `on_false`)."""
  rest = jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true.replace(data=None),
                      on_false.replace(data=None))
  return rest.replace(data=backend.select_data(pred, on_true.data, on_false.data))


def _reset(env, rng: jax.Array, dr_ranges=None) -> State:
  """`env.reset`, passing DR ranges through when the env is randomized (`base.Randomized`)."""
  if dr_ranges is None:
    return env.reset(rng)
  if not supports_dr(env):
    raise TypeError(f"dr_ranges given, but {type(env).__name__} has no domain randomization")
  return env.reset(rng, dr_ranges=dr_ranges)


class EpisodeWrapper(Wrapper):
  """Counts control steps, repeats actions, and truncates at `episode_length`.

  `episode_length` counts control (wrapper) steps, each `action_repeat` env steps whose rewards are
  summed; a sub-step that ends the episode is the step's last (nothing after it is simulated or
  rewarded).

  `info["steps"]` (int32) counts wrapper steps in the episode; `info["truncation"]` (f32) is 1.0 when
  the episode ended by the time limit rather than by a terminal state. For an env with a task
  outcome (`metrics["success"]`, 0/1 per step) the success is latched per episode:
  `info["episode_success"]` and `metrics["episode_success"]` (f32) are 1.0 from the first successful
  step to the end of the episode (with action repeat, as seen at the last sub-step of each step).
  """

  def __init__(self, env, episode_length: int, action_repeat: int = 1):
    super().__init__(env)
    if episode_length < 1 or action_repeat < 1:
      raise ValueError(f"episode_length ({episode_length}) and action_repeat ({action_repeat}) "
                       "must be positive")
    self.episode_length = int(episode_length)
    self.action_repeat = int(action_repeat)

  def reset(self, rng: jax.Array, dr_ranges=None) -> State:
    state = _reset(self.env, rng, dr_ranges)
    state.info["steps"] = jnp.zeros((), jnp.int32)
    state.info["truncation"] = jnp.zeros(())
    if "success" in state.metrics:
      state.info["episode_success"] = jnp.zeros(())
      state.metrics["episode_success"] = jnp.zeros(())
    return state

  def step(self, state: State, action: jax.Array) -> State:
    if self.action_repeat == 1:
      state = self.env.step(state, action)
    else:
      state = self._repeat(state, action)
    steps = state.info["steps"] + 1
    timeout = steps >= self.episode_length
    done = jnp.maximum(state.done, timeout.astype(state.done.dtype))
    state.info["steps"] = steps
    # float32, not weakly typed: the state must keep one signature or jit recompiles.
    state.info["truncation"] = (timeout & (state.done == 0)).astype(jnp.float32)
    if "success" in state.metrics:
      latched = jnp.maximum(state.info["episode_success"], state.metrics["success"])
      state.info["episode_success"] = latched
      state.metrics["episode_success"] = latched
    return state.replace(done=done)

  def _repeat(self, state: State, action: jax.Array) -> State:
    """`action_repeat` env steps summing the rewards; a sub-step that ends the episode is the last
    (the state is held there, and later sub-steps add no reward)."""
    def repeat(carry, _):
      current, total = carry
      ended = current.done > 0
      stepped = self.env.step(current, action)
      current = _select_state(ended, current, stepped)
      return (current, total + jnp.where(ended, 0.0, stepped.reward)), None
    start = state.replace(done=jnp.zeros_like(state.done))
    (state, total), _ = jax.lax.scan(repeat, (start, jnp.zeros_like(state.reward)), None,
                                     length=self.action_repeat)
    return state.replace(reward=total)


class VmapWrapper(Wrapper):
  """Batches reset over keys `u32[B, 2]` and step over states and actions `f32[B, A]`."""

  def reset(self, rng: jax.Array, dr_ranges=None) -> State:
    with backend.num_worlds(rng.shape[0]):
      if dr_ranges is None:
        return jax.vmap(self.env.reset)(rng)
      return jax.vmap(lambda k, r: self.env.reset(k, dr_ranges=r))(rng, dr_ranges)

  def step(self, state: State, action: jax.Array) -> State:
    return jax.vmap(self.env.step)(state, action)


class AutoResetWrapper(Wrapper):
  """Replaces finished envs of a batch with freshly drawn initial states.

  Works on a batched env. Each fresh draw uses a new key split from the env's `info["reset_rng"]`
  and its current `info["dr_ranges"]` when present. With `reset_refresh=1` the reset branch runs
  only when some env in the batch is done; with `K > 1` the pool (`info["reset_pool"]`) is redrawn
  every K steps (`info["reset_pool_age"]` counts them) and finished envs take theirs by a select.
  The done flag, reward and truncation of the finished step are kept.

  With `refresh_by_caller=True`, `step` never redraws the pool: the caller runs
  `refresh_pool_if_due` between steps, e.g. once before a `lax.scan` over K steps. A scanned step
  then holds no cond, whose predicate an accelerator reads back to the host at every step.
  """

  _OWN_INFO = ("truncation", "final_obs", "reset_rng", "reset_pool", "reset_pool_age")

  def __init__(self, env, keep_final_obs: bool = True, reset_refresh: int = 1,
               refresh_by_caller: bool = False):
    super().__init__(env)
    if reset_refresh < 1:
      raise ValueError(f"reset_refresh ({reset_refresh}) must be >= 1")
    self.keep_final_obs = keep_final_obs
    self.reset_refresh = reset_refresh
    self.refresh_by_caller = refresh_by_caller

  def reset(self, rng: jax.Array) -> State:
    keys = jax.vmap(jax.random.split)(rng)  # [B, 2, 2]
    state = self.env.reset(keys[:, 0])
    state.info["reset_rng"] = keys[:, 1]
    if self.keep_final_obs:
      state.info["final_obs"] = state.obs
    if self.reset_refresh > 1:
      state = self._refresh_pool(state)
    return state

  def step(self, state: State, action: jax.Array) -> State:
    if not self.refresh_by_caller:  # before stepping, so it sees DR ranges changed in between
      state = self.refresh_pool_if_due(state)
    # Envs finished on the previous step were already reset, so clear their flags first.
    state = state.replace(done=jnp.zeros_like(state.done))
    state = self.env.step(state, action)
    if self.keep_final_obs:
      state.info["final_obs"] = state.obs
    if self.reset_refresh == 1:
      return jax.lax.cond(jnp.any(state.done > 0), self._reset_done, lambda s: s, state)
    # A select, not a cond: no host round trip for the predicate on an accelerator.
    state = self._take_from_pool(state)
    state.info["reset_pool_age"] = state.info["reset_pool_age"] + 1
    return state

  def refresh_pool_if_due(self, state: State) -> State:
    """Redraws the reset pool when it has served `reset_refresh` steps (no-op without a pool)."""
    if self.reset_refresh == 1:
      return state
    return jax.lax.cond(state.info["reset_pool_age"][0] >= self.reset_refresh,
                        self._refresh_pool, lambda s: s, state)

  def _draw(self, state: State) -> tuple[State, jax.Array]:
    """Fresh initial states for the whole batch, and the envs' next reset keys."""
    keys = jax.vmap(jax.random.split)(state.info["reset_rng"])
    randomized = supports_dr(self.env) and "dr_ranges" in state.info
    fresh = self.env.reset(keys[:, 0], **({"dr_ranges": state.info["dr_ranges"]}
                                          if randomized else {}))
    return fresh, keys[:, 1]

  def _replace_done(self, state: State, data, obs, info_source: dict) -> State:
    """`state` with the finished envs' data, observation and env info taken from the sources."""
    done = state.done > 0

    def pick(new, old):
      mask = jnp.reshape(done, done.shape + (1,) * (old.ndim - done.ndim))
      return jnp.where(mask, new, old)

    info = {k: (v if k in self._OWN_INFO else jax.tree.map(pick, info_source[k], v))
            for k, v in state.info.items()}
    return state.replace(data=backend.select_batched_data(done, data, state.data),
                         obs=jax.tree.map(pick, obs, state.obs), info=info)

  def _reset_done(self, state: State) -> State:
    fresh, next_rng = self._draw(state)
    state = self._replace_done(state, fresh.data, fresh.obs, fresh.info)
    state.info["reset_rng"] = next_rng
    return state

  def _take_from_pool(self, state: State) -> State:
    pool = state.info["reset_pool"]
    return self._replace_done(state, pool["data"], pool["obs"], pool["info"])

  def _refresh_pool(self, state: State) -> State:
    fresh, next_rng = self._draw(state)
    info = dict(state.info, reset_rng=next_rng,
                reset_pool={"data": fresh.data, "obs": fresh.obs, "info": fresh.info},
                reset_pool_age=jnp.zeros_like(state.done, dtype=jnp.int32))
    return state.replace(info=info)


def wrap_for_training(env, episode_length: int, action_repeat: int = 1,
                      keep_final_obs: bool = True, reset_refresh: int = 1,
                      refresh_by_caller: bool = False):
  """Episode limit + action repeat, vmap over a batch, then auto-reset: the learners' env."""
  env = EpisodeWrapper(env, episode_length, action_repeat)
  env = VmapWrapper(env)
  return AutoResetWrapper(env, keep_final_obs=keep_final_obs, reset_refresh=reset_refresh,
                          refresh_by_caller=refresh_by_caller)
