"""Env registry: `make(name, **config_overrides)`.

Overrides use `vlajax.core.config.apply_overrides`, so an unknown env name or config key raises an
error that names it. Every registered env's config has `impl` ("jax" | "warp"), so
`make(name, impl="warp")` selects the physics backend (see `vlajax.envs.backend`).
"""
from __future__ import annotations

import importlib
from typing import Any

import ml_collections

from vlajax.core.config import apply_overrides
from vlajax.envs.base import Randomized

# name -> "module:Class"; imported lazily so `make("cartpole")` does not build every env.
_ENVS: dict[str, str] = {
    "cartpole": "vlajax.envs.classic.cartpole:Cartpole",
    "cartpole_swingup": "vlajax.envs.classic.cartpole:Cartpole",
    "quadruped_joystick": "vlajax.envs.locomotion.quadruped_joystick:QuadrupedJoystick",
    "arm_reach": "vlajax.envs.manipulation.reach:ArmReach",
    "arm_push_cube": "vlajax.envs.manipulation.cube:ArmPushCube",
    "arm_pick_cube": "vlajax.envs.manipulation.cube:ArmPickCube",
    "tabletop_language": "vlajax.envs.manipulation.tabletop_language:TabletopLanguage",
}
# Config presets applied before user overrides.
_PRESETS: dict[str, dict[str, Any]] = {
    "cartpole_swingup": {"swing_up": True, "init_angle_noise": 0.2},
}


def names() -> list[str]:
  return sorted(_ENVS)


def register(name: str, target: str, preset: dict[str, Any] | None = None) -> None:
  """Registers `target` ("module:Class") under `name`."""
  _ENVS[name] = target
  if preset:
    _PRESETS[name] = dict(preset)


def env_class(name: str):
  if name not in _ENVS:
    raise KeyError(f"unknown env '{name}' (registered: {', '.join(names())})")
  module, cls = _ENVS[name].split(":")
  return getattr(importlib.import_module(module), cls)


def default_config(name: str) -> ml_collections.ConfigDict:
  cls = env_class(name)
  return apply_overrides(cls.default_config(), _PRESETS.get(name, {}), where=f"env '{name}' config")


def default_adr_config(name: str) -> ml_collections.ConfigDict:
  """Env `name`'s automatic-DR `bounds` and `steps` (`base.Randomized.default_adr_config`; empty for
  an env without domain randomization, whose ranges ADR cannot change)."""
  cls = env_class(name)
  if not issubclass(cls, Randomized):
    return ml_collections.ConfigDict({"bounds": {}, "steps": {}})
  return cls.default_adr_config()


def make(name: str, config: ml_collections.ConfigDict | None = None, **overrides):
  """Builds env `name` from its default config (or `config`) with `overrides` applied."""
  base = default_config(name) if config is None else config
  resolved = apply_overrides(base, overrides, where=f"env '{name}' config")
  return env_class(name)(resolved)
