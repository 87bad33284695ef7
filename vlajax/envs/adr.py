"""Automatic domain randomization (ADR): DR ranges that widen while the policy copes and shrink when
it does not (OpenAI et al. 2019, "Solving Rubik's Cube with a Robot Hand"; seed 001 section 16).

Pure functions on a `flax.struct` state, so the learner can keep it in its train state and jit it:

  adr_state = adr.init(env.default_dr_ranges(), bounds={...}, steps={...}, low_threshold=0.4,
                       high_threshold=0.8)
  adr_state = adr.update(adr_state, performance)        # performance: f32[], e.g. mean tracking reward
  state     = adr.with_ranges(batched_env_state, adr_state)  # next auto-resets draw from new ranges
  writer.write(step, adr.as_metrics(adr_state))         # dr/<field>/low, dr/<field>/high

A learner wires it in with two calls: `adr.initial_state(adr_config, env)` when it builds its
train state, and `adr.advance(...)` at the end of each (jitted) iteration.

This module is the mechanism only. Which fields adapt, how far and how fast is the env's: a
`base.Randomized` env's classmethod `default_adr_config()` gives per-field `bounds` and `steps`
(`locomotion/randomization.py`, `manipulation/randomization.py`), and a config section's own
`bounds` / `steps` override them field by field (`env_limits`). ADR starts from the env config's DR
ranges (`initial_ranges="config"`) or from the un-randomized env's (`"nominal"`, the env's
`nominal_dr_ranges()`); the envs' first episodes, drawn before the learner writes the ADR ranges
into their states, come from the config's ranges either way.

Rule, per field with a step size s > 0: when performance >= high_threshold the range widens by s on
each side; when performance < low_threshold it narrows by s on each side; otherwise it stays. A range
never leaves its bounds and never becomes narrower than its nominal range (by default the initial
one), so `bound_low <= low <= nominal_low` and `nominal_high <= high <= bound_high`. Fields given no
bounds keep their initial range (step 0).
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct

from vlajax.envs.base import Randomized, supports_dr

Ranges = dict[str, jax.Array]  # field -> f32[2, ...] (low, high)


@struct.dataclass
class ADRState:
  """Current ranges and their limits; every leaf is per field f32[...] (trailing dims of the range)."""
  low: dict[str, jax.Array]
  high: dict[str, jax.Array]
  bound_low: dict[str, jax.Array]
  bound_high: dict[str, jax.Array]
  nominal_low: dict[str, jax.Array]
  nominal_high: dict[str, jax.Array]
  step_size: dict[str, jax.Array]
  low_threshold: jax.Array
  high_threshold: jax.Array
  num_widened: jax.Array   # i32[]: updates that widened
  num_shrunk: jax.Array    # i32[]: updates that shrank


INITIAL_RANGES = ("config", "nominal")


def default_config() -> ml_collections.ConfigDict:
  """The generic ADR settings (a learner-config section). `performance` is whatever scalar the
  learner passes to `update` (e.g. the mean per-step `reward/tracking_lin_vel` of the joystick or
  `success` of an arm task). `bounds` / `steps` ({field: (low, high)} / {field: s}) override the
  env's `default_adr_config()` per field; empty, the env's apply (`experiments/configs/rl_base.py`
  fills them with the env's, so that each shows in the run's config and can be set on the command
  line). `initial_ranges`: "config" or "nominal" (module docstring)."""
  return ml_collections.ConfigDict({
      "enabled": False,
      "low_threshold": 0.4,
      "high_threshold": 0.7,
      "initial_ranges": "config",
      "bounds": {},
      "steps": {},
  })


def init(initial: Mapping[str, jax.Array], bounds: Mapping[str, tuple[float, float]],
         steps: Mapping[str, float], low_threshold: float, high_threshold: float,
         nominal: Mapping[str, jax.Array] | None = None) -> ADRState:
  """ADR state starting at `initial` ranges ({field: (low, high)}); errors name the bad field."""
  nominal = initial if nominal is None else nominal
  unknown = sorted((set(bounds) | set(steps)) - set(initial))
  if unknown:
    raise KeyError(f"ADR bounds/steps for unknown DR field(s) {unknown} "
                   f"(fields: {sorted(initial)})")
  no_step = sorted(set(bounds) - set(steps))
  if no_step:
    raise KeyError(f"ADR field(s) {no_step} have bounds but no step size")
  if not low_threshold <= high_threshold:
    raise ValueError(f"ADR low_threshold {low_threshold} > high_threshold {high_threshold}")
  st = {k: {} for k in ("low", "high", "bound_low", "bound_high", "nominal_low", "nominal_high",
                        "step_size")}
  for field, value in initial.items():
    value = jnp.asarray(value, jnp.float32)
    if value.shape[:1] != (2,):
      raise ValueError(f"ADR initial range '{field}' must be (low, high), got shape {value.shape}")
    nom = jnp.asarray(nominal.get(field, value), jnp.float32)
    bound = jnp.asarray(bounds.get(field, (value[0], value[1])), jnp.float32)
    bound = jnp.broadcast_to(bound.reshape((2,) + (1,) * (value.ndim - 1)), value.shape)
    step = float(steps.get(field, 0.0))
    if step < 0:
      raise ValueError(f"ADR step for '{field}' must be >= 0, got {step}")
    if bool(jnp.any(bound[0] > jnp.minimum(value[0], nom[0]))) or \
        bool(jnp.any(bound[1] < jnp.maximum(value[1], nom[1]))):
      raise ValueError(f"ADR bounds {bound.tolist()} for '{field}' must contain its initial "
                       f"{value.tolist()} and nominal {nom.tolist()} ranges")
    if bool(jnp.any(nom[0] < value[0])) or bool(jnp.any(nom[1] > value[1])):
      raise ValueError(f"ADR initial range {value.tolist()} for '{field}' must contain its nominal "
                       f"range {nom.tolist()}")
    st["low"][field], st["high"][field] = value[0], value[1]
    st["bound_low"][field], st["bound_high"][field] = bound[0], bound[1]
    st["nominal_low"][field], st["nominal_high"][field] = nom[0], nom[1]
    st["step_size"][field] = jnp.full(value.shape[1:], step, jnp.float32)
  return ADRState(**st, low_threshold=jnp.float32(low_threshold),
                  high_threshold=jnp.float32(high_threshold),
                  num_widened=jnp.zeros((), jnp.int32), num_shrunk=jnp.zeros((), jnp.int32))


def env_limits(cfg: ml_collections.ConfigDict, env: Randomized
               ) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
  """`(bounds, steps)`: the env's `default_adr_config()`, updated field by field by the section's
  own `bounds` / `steps`."""
  defaults = env.default_adr_config()
  bounds = {k: tuple(v) for k, v in defaults.bounds.items()}
  bounds.update({k: tuple(v) for k, v in cfg.bounds.items()})
  steps = {k: float(v) for k, v in defaults.steps.items()}
  steps.update({k: float(v) for k, v in cfg.steps.items()})
  return bounds, steps


def for_env(cfg: ml_collections.ConfigDict, env) -> ADRState:
  """The ADR state for `env` (a `base.Randomized` env, or a wrapper of one) under a
  `default_config()`-shaped section: its `initial_ranges`, the env's limits (`env_limits`) and the
  section's thresholds, whether or not the section is enabled. Built eagerly: the ranges are
  validated with concrete values."""
  if not supports_dr(env):
    raise ValueError(f"ADR needs domain randomization, but {type(env).__name__} has no domain "
                     "randomization")
  start = cfg.get("initial_ranges", "config")
  if start not in INITIAL_RANGES:
    raise ValueError(f"adr.initial_ranges must be one of {INITIAL_RANGES}, got {start!r}")
  initial = env.default_dr_ranges() if start == "config" else env.nominal_dr_ranges()
  bounds, steps = env_limits(cfg, env)
  return init(initial, bounds=bounds, steps=steps, low_threshold=cfg.low_threshold,
              high_threshold=cfg.high_threshold)


def update(state: ADRState, performance: jax.Array) -> ADRState:
  """Widens every adaptive range by its step when `performance >= high_threshold`, narrows it when
  `performance < low_threshold`; clamps to bounds and to the nominal range. Jittable."""
  performance = jnp.asarray(performance, jnp.float32)
  widen = performance >= state.high_threshold
  shrink = performance < state.low_threshold
  delta = jnp.where(widen, 1.0, jnp.where(shrink, -1.0, 0.0))

  def new_low(low, step, bound, nom):
    return jnp.clip(low - delta * step, bound, nom)

  def new_high(high, step, bound, nom):
    return jnp.clip(high + delta * step, nom, bound)

  low = jax.tree.map(new_low, state.low, state.step_size, state.bound_low, state.nominal_low)
  high = jax.tree.map(new_high, state.high, state.step_size, state.bound_high, state.nominal_high)
  return state.replace(low=low, high=high,
                       num_widened=state.num_widened + widen.astype(jnp.int32),
                       num_shrunk=state.num_shrunk + shrink.astype(jnp.int32))


def ranges(state: ADRState) -> Ranges:
  """Current ranges `{field: f32[2, ...]}`, the shape of one env's `info["dr_ranges"]`."""
  return {k: jnp.stack([state.low[k], state.high[k]]) for k in state.low}


def with_ranges(env_state, state: ADRState):
  """`env_state` (batched: leading axes on every leaf) with `info["dr_ranges"]` set to the current
  ranges, broadcast over the batch; the next (auto-)reset of each env draws from them."""
  current = env_state.info["dr_ranges"]
  missing = sorted(set(state.low) - set(current))
  if missing:
    raise KeyError(f"env state has no dr_ranges for ADR field(s) {missing}")
  new = dict(current)
  for field, value in ranges(state).items():
    new[field] = jnp.broadcast_to(value, current[field].shape).astype(current[field].dtype)
  return env_state.replace(info={**env_state.info, "dr_ranges": new})


def as_metrics(state: ADRState) -> dict[str, jax.Array]:
  """`dr/<field>/low` and `dr/<field>/high` scalars (means over trailing dims) for logging."""
  metrics = {}
  for field in sorted(state.low):
    metrics[f"dr/{field}/low"] = jnp.mean(state.low[field])
    metrics[f"dr/{field}/high"] = jnp.mean(state.high[field])
  return metrics


def initial_state(cfg: ml_collections.ConfigDict | None, env) -> ADRState | None:
  """The ADR state a learner starts from for an `adr` config section (`default_config()` plus
  `performance_metric`; `for_env`), or None when `cfg` is None or not enabled."""
  if cfg is None or not cfg.enabled:
    return None
  if not supports_dr(env):
    raise ValueError(f"adr.enabled is set but {type(env).__name__} has no domain randomization")
  if not cfg.get("performance_metric"):
    raise ValueError("adr.performance_metric must name an env metric (e.g. "
                     "'reward/tracking_lin_vel') when adr.enabled is set")
  return for_env(cfg, env)


def advance(state: ADRState, env_state, env_metrics: Mapping[str, jax.Array],
            performance_metric: str):
  """One ADR step after a learner's iteration: `update` with the mean of
  `env_metrics[performance_metric]` (any shape, e.g. f32[T, B] from a rollout), then the new
  ranges into the batched `env_state`. Returns `(state, env_state)`; jittable."""
  if performance_metric not in env_metrics:
    raise KeyError(f"adr.performance_metric '{performance_metric}' is not a metric of the env "
                   f"(have: {', '.join(sorted(env_metrics))})")
  state = update(state, jnp.mean(env_metrics[performance_metric]))
  return state, with_ranges(env_state, state)


def range_metrics(env_state) -> dict[str, jax.Array]:
  """`dr/<field>/low|high` of the ranges a batched env state's next resets draw from (means over
  envs and trailing dims); empty for an env without domain randomization."""
  metrics = {}
  for field, value in env_state.info.get("dr_ranges", {}).items():
    metrics[f"dr/{field}/low"] = jnp.mean(value[:, 0])
    metrics[f"dr/{field}/high"] = jnp.mean(value[:, 1])
  return metrics
