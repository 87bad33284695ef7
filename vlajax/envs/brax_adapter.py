"""Interoperability with brax and MuJoCo Playground.

`to_brax(env)` wraps one of our envs as a `brax.envs.Env`, so it can be passed as `environment=`
to `brax.training.agents.ppo.train` / `sac.train`. Its `State.pipeline_state` is `{"data": our MJX
data, "info": our env's info}`: brax's `AutoResetWrapper` restores only `pipeline_state` and `obs`
of finished envs and keeps `info`, so an env's own per-episode state (an arm's actuator targets,
its target point, the last action) must travel in `pipeline_state` to be reset with the physics;
`State.info` holds brax's entries only.
Its `sys` is our env's MJX model: brax's `DomainRandomizationVmapWrapper` swaps it per env, and
`randomization_fn(env)` exposes our model-level DR draws in brax's `(sys, rng) -> (sys, in_axes)`
form. (brax draws those once per run and caches the first state for resets; our own wrappers
re-draw at every reset.)

`from_brax(brax_env)` goes the other way: a brax / Playground-shaped env (array or dict
observations, `pipeline_state` or `data`) becomes an env our learners and wrappers accept. Array
observations appear as both `state` and `privileged_state`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs import base as brax_base

from vlajax.envs.base import BraxRandomized, State, dr_enabled


class BraxEnv(brax_base.Env):
  """One of our envs seen through brax's `Env` interface."""

  def __init__(self, env):
    self._env = env
    self._randomized = isinstance(env, BraxRandomized) and dr_enabled(env)

  def reset(self, rng: jax.Array) -> brax_base.State:
    return _to_brax_state(self._env.reset(rng), {})

  def step(self, state: brax_base.State, action: jax.Array) -> brax_base.State:
    ours = State(data=state.pipeline_state["data"], obs=state.obs, reward=state.reward,
                 done=state.done, metrics=state.metrics, info=state.pipeline_state["info"])
    # brax wrappers add their own entries to metrics (e.g. `reward`) and info (e.g. `steps`) and
    # expect them kept.
    new = self._env.step(ours, action)
    return _to_brax_state(new.replace(metrics={**state.metrics, **new.metrics}), state.info)

  @property
  def sys(self):
    """The MJX model used by `step` (brax's DR wrapper replaces it per env while tracing)."""
    return self._env._mjx_model  # pylint: disable=protected-access

  @sys.setter
  def sys(self, model):
    self._env._mjx_model = model  # pylint: disable=protected-access

  @property
  def observation_size(self):
    return self._env.observation_size

  @property
  def action_size(self) -> int:
    return self._env.action_size

  @property
  def backend(self) -> str:
    return "mjx"

  @property
  def dt(self) -> float:
    return self._env.dt

  @property
  def unwrapped(self):
    return self


def _to_brax_state(state: State, brax_info: dict) -> brax_base.State:
  return brax_base.State(pipeline_state={"data": state.data, "info": dict(state.info)},
                         obs=state.obs, reward=state.reward, done=state.done,
                         metrics=dict(state.metrics), info=dict(brax_info))


def to_brax(env) -> BraxEnv:
  """`env` (ours) as a brax `Env`, accepted as `environment=` by brax's learners."""
  return BraxEnv(env)


def randomization_fn(env, ranges=None):
  """Our model-level DR as brax's `randomization_fn(sys, rng) -> (sys_batched, in_axes)`.

  Pass it to brax's `ppo.train(..., randomization_fn=...)`. To avoid randomizing twice, build the
  env with `randomization.enabled=False` (then latency, noise and pushes are off as well).
  `ranges` default to the env's config ranges (`env.brax_randomization_fn(None)`).
  """
  if not isinstance(env, BraxRandomized):
    raise ValueError(f"{type(env).__name__} has no brax-style domain randomization "
                     "(brax_randomization_fn)")
  return env.brax_randomization_fn(ranges)


class FromBrax:
  """A brax / Playground env behind our `Env` protocol (dict observations, `data` field)."""

  def __init__(self, brax_env):
    self._env = brax_env

  def reset(self, rng: jax.Array) -> State:
    return self._from(self._env.reset(rng))

  def step(self, state: State, action: jax.Array) -> State:
    obs = state.info["_brax_obs"]
    physics = {"data": state.data} if self._has_data else {"pipeline_state": state.data}
    info = {k: v for k, v in state.info.items() if k != "_brax_obs"}
    theirs = self._state_cls(obs=obs, reward=state.reward, done=state.done, metrics=state.metrics,
                             info=info, **physics)
    return self._from(self._env.step(theirs, action))

  def _from(self, theirs) -> State:
    self._state_cls = type(theirs)
    self._has_data = hasattr(theirs, "data") and not hasattr(theirs, "pipeline_state")
    data = theirs.data if self._has_data else theirs.pipeline_state
    obs = theirs.obs
    if isinstance(obs, dict):
      ours_obs = dict(obs)
      if "privileged_state" not in ours_obs and "state" in ours_obs:
        ours_obs["privileged_state"] = ours_obs["state"]
    else:
      ours_obs = {"state": obs, "privileged_state": obs}
    info = dict(theirs.info)
    info["_brax_obs"] = obs
    return State(data=data, obs=ours_obs, reward=jnp.asarray(theirs.reward, jnp.float32),
                 done=jnp.asarray(theirs.done, jnp.float32), metrics=dict(theirs.metrics), info=info)

  @property
  def observation_size(self) -> dict[str, tuple[int, ...]]:
    state = jax.eval_shape(self.reset, jax.random.PRNGKey(0))
    return {k: tuple(v.shape) for k, v in state.obs.items()}

  @property
  def action_size(self) -> int:
    return int(self._env.action_size)

  @property
  def dt(self) -> float:
    return float(self._env.dt)

  @property
  def unwrapped(self):
    return self


def from_brax(brax_env) -> FromBrax:
  """A brax (`pipeline_state`) or Playground (`data`) env as one of ours, for our learners."""
  return FromBrax(brax_env)


def install_device_put_replicated() -> None:
  """Restores `jax.device_put_replicated`, which brax 0.14.2's learners call and current JAX removed.

  The replacement stacks a copy per device and places it with a sharding over those devices.
  """
  if hasattr(jax, "device_put_replicated"):
    return
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jax.sharding import Mesh, NamedSharding, PartitionSpec  # pylint: disable=import-outside-toplevel

  def device_put_replicated(x, devices):
    devices = list(devices)
    sharding = NamedSharding(Mesh(np.asarray(devices), ("d",)), PartitionSpec("d"))
    stacked = jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), x)
    return jax.device_put(stacked, sharding)

  jax.device_put_replicated = device_put_replicated
