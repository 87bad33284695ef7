"""The environment protocol: MuJoCo Playground's shape, pure functions on `State` pytrees.

An env is `reset(rng) -> State` and `step(state, action) -> State`, both traceable (jit / vmap).
Observations are dicts: `state` (what the policy sees) and `privileged_state` (what an asymmetric
critic sees). Per-term rewards appear in `metrics["reward/<term>"]`.

Shapes for one (unbatched) env: `obs[k]: f32[obs_size[k]]`, `reward: f32[]`, `done: f32[]`,
`action: f32[action_size]` in [-1, 1].

Physics runs on the backend `config.impl` names, "jax" (default) or "warp" (see
`vlajax.envs.backend`: Warp's capacities `naconmax_per_env` / `njmax`, and how the batch size reaches
`make_data`). Envs build their initial `mjx.Data` with `self.make_data()`.

Domain randomization (DR): an env that draws DR parameters per episode implements the `Randomized`
protocol (`default_dr_ranges()`, `nominal_dr_ranges()`, `reset(rng, dr_ranges=None)`, and the
classmethod `default_adr_config()` with the bounds and step sizes automatic DR uses for its fields,
`vlajax.envs.adr`; `supports_dr(env)` tells); one whose model-level draws can also run as brax's
`randomization_fn` implements `BraxRandomized`.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import ml_collections
import mujoco
from flax import struct
from mujoco import mjx

from vlajax.envs import backend

Observation = dict[str, jax.Array]


@struct.dataclass
class State:
  """One env's state. `info` carries step counters, DR draws, RNG and task variables."""
  data: mjx.Data
  obs: Observation
  reward: jax.Array
  done: jax.Array
  metrics: dict[str, jax.Array]
  info: dict[str, Any]


@runtime_checkable
class Randomized(Protocol):
  """An env with domain randomization: ranges `{field: f32[2, ...]}` (low, high) in
  `State.info["dr_ranges"]`, draws in `State.info["dr"]`, re-drawn at every reset."""

  def default_dr_ranges(self) -> dict[str, jax.Array]:
    """The config's DR ranges, `{field: f32[2, ...]}`."""

  def nominal_dr_ranges(self) -> dict[str, jax.Array]:
    """Ranges, `{field: f32[2, ...]}`, whose draws reproduce the un-randomized env (scales 1,
    offsets 0, nominal frictions); what ADR never narrows below when it starts from them."""

  @classmethod
  def default_adr_config(cls) -> ml_collections.ConfigDict:
    """The env's part of an ADR section (`vlajax.envs.adr`): `bounds` `{field: (low, high)}`, the
    widest range ADR may reach, and `steps` `{field: s}`, how far one update moves each end.
    Fields left out keep their starting range."""

  def reset(self, rng: jax.Array, dr_ranges: dict[str, jax.Array] | None = None) -> State:
    """A fresh state whose DR draw comes from `dr_ranges` (default: `default_dr_ranges()`)."""


@runtime_checkable
class BraxRandomized(Protocol):
  """An env whose model-level DR can run as brax's `randomization_fn(sys, rng) -> (sys, in_axes)`
  (`vlajax.envs.brax_adapter`)."""

  def brax_randomization_fn(self, ranges: dict[str, jax.Array] | None = None
                            ) -> Callable[[mjx.Model, jax.Array], tuple[mjx.Model, mjx.Model]]:
    """brax-style randomization of the model fields drawn from `ranges` (default: the config's)."""


def supports_dr(env: Any) -> bool:
  """True when `env` (or the env a wrapper forwards to) implements `Randomized`."""
  return isinstance(env, Randomized)


def dr_enabled(env: Any) -> bool:
  """True when `env` supports DR and its config has it switched on (`randomization.enabled`)."""
  if not supports_dr(env):
    return False
  section = getattr(getattr(env, "config", None), "randomization", None)
  return section is not None and bool(section.get("enabled", True))


class Env(abc.ABC):
  """Base class for MJX environments.

  Subclasses provide `default_config()`, `reset` and `step`. `self.config` is the resolved
  `ConfigDict`; it must contain `ctrl_dt`, `sim_dt` and `episode_length`, and may contain `impl`
  ("jax" when absent) and, for "warp", `naconmax_per_env` and `njmax`.
  """

  def __init__(self, config: ml_collections.ConfigDict, mj_model: mujoco.MjModel):
    self.config = config
    self.impl = backend.check_impl(config.get("impl", "jax"))
    if self.impl == "warp":
      missing = [k for k in ("naconmax_per_env", "njmax") if k not in config]
      if missing:
        raise KeyError(f"impl='warp' needs env config field(s) {missing}")
      backend.check_capacities(config.naconmax_per_env, config.njmax)
    self._mj_model = mj_model
    self._mj_model.opt.timestep = config.sim_dt
    # A process-local device: under jax.distributed, jax.devices()[0] may belong to another host.
    self._device = jax.local_devices()[0]
    self._mjx_model = mjx.put_model(mj_model, device=self._device, impl=self.impl)

  @classmethod
  @abc.abstractmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    """Physics and task config (separate from any learner config)."""

  @abc.abstractmethod
  def reset(self, rng: jax.Array) -> State:
    """Draws an initial state (and, for randomized envs, fresh DR parameters)."""

  @abc.abstractmethod
  def step(self, state: State, action: jax.Array) -> State:
    """Advances one control step (`n_substeps` physics steps)."""

  # -- physics helpers ---------------------------------------------------------------------------

  def make_data(self) -> mjx.Data:
    """A fresh one-world `mjx.Data` at `qpos0` on this env's backend (vmap `reset` to batch it)."""
    return backend.make_data(self._mj_model, self._mjx_model, self.impl, self._device,
                             self.config.get("naconmax_per_env", 0), self.config.get("njmax", 1))

  def physics_step(self, model: mjx.Model, data: mjx.Data, ctrl: jax.Array) -> mjx.Data:
    """Runs `n_substeps` MJX steps holding `ctrl`."""
    data = data.replace(ctrl=ctrl)
    def substep(d, _):
      return mjx.step(model, d), None
    data, _ = jax.lax.scan(substep, data, None, length=self.n_substeps)
    return data

  # -- properties -------------------------------------------------------------------------------

  @property
  def ctrl_dt(self) -> float:
    return float(self.config.ctrl_dt)

  @property
  def dt(self) -> float:
    return self.ctrl_dt

  @property
  def sim_dt(self) -> float:
    return float(self.config.sim_dt)

  @property
  def n_substeps(self) -> int:
    return int(round(self.ctrl_dt / self.sim_dt))

  @property
  def mj_model(self) -> mujoco.MjModel:
    return self._mj_model

  @property
  def mjx_model(self) -> mjx.Model:
    return self._mjx_model

  @property
  def action_size(self) -> int:
    return int(self._mj_model.nu)

  @property
  def observation_size(self) -> dict[str, tuple[int, ...]]:
    """Shapes of each observation entry, found by tracing `reset`."""
    state = jax.eval_shape(self.reset, jax.random.PRNGKey(0))
    return {k: tuple(v.shape) for k, v in state.obs.items()}

  @property
  def unwrapped(self) -> "Env":
    return self


def zeros_metrics(names) -> dict[str, jax.Array]:
  return {name: jnp.zeros(()) for name in names}
