"""Config helpers: overrides that name bad keys and wrong types.

Configs are `ml_collections.ConfigDict`s. `apply_overrides` is the one place where user-supplied
values meet a config, so every entry point and `vlajax.envs.make` reports bad input the same way.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import ml_collections


def _join(prefix: str, key: str) -> str:
  return f"{prefix}.{key}" if prefix else key


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any],
                    where: str = "config") -> ml_collections.ConfigDict:
  """Returns a copy of `config` with `overrides` applied.

  Keys may be nested dicts or dotted paths (`"ppo.lr"`). An unknown key raises `KeyError` naming the
  full path and the valid keys at that level; a value whose type cannot replace the default raises
  `TypeError` naming the path.
  """
  config = ml_collections.ConfigDict(config.to_dict() if hasattr(config, "to_dict") else config)
  for key, value in overrides.items():
    _set(config, key.split("."), value, where, "")
  return config


def _set(node: ml_collections.ConfigDict, path: list[str], value: Any, where: str, prefix: str):
  key, rest = path[0], path[1:]
  full = _join(prefix, key)
  if key not in node:
    valid = ", ".join(sorted(node.keys()))
    raise KeyError(f"unknown {where} key '{full}' (valid keys here: {valid})")
  current = node[key]
  if rest:
    if not isinstance(current, ml_collections.ConfigDict):
      raise KeyError(f"{where} key '{full}' is a value, not a group; cannot set '{'.'.join(path)}'")
    _set(current, rest, value, where, full)
    return
  if isinstance(current, ml_collections.ConfigDict):
    if not isinstance(value, Mapping):
      raise TypeError(f"{where} key '{full}' is a group; expected a mapping, got {type(value).__name__}")
    for sub_key, sub_value in value.items():
      _set(current, sub_key.split("."), sub_value, where, full)
    return
  node[key] = _coerce(current, value, f"{where} key '{full}'")


def _coerce(current: Any, value: Any, name: str) -> Any:
  """Checks that `value` may replace `current` (ints widen to floats; tuples and lists interchange)."""
  if current is None or value is None:
    return value
  if isinstance(current, bool) or isinstance(value, bool):
    if isinstance(current, bool) and isinstance(value, bool):
      return value
    raise TypeError(f"{name} expects {type(current).__name__}, got {value!r}")
  if isinstance(current, float) and isinstance(value, int):
    return float(value)
  if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
    return type(current)(value)
  if isinstance(current, (int, float, str)) and not isinstance(value, type(current)):
    raise TypeError(f"{name} expects {type(current).__name__}, got {type(value).__name__} {value!r}")
  return value


def to_json(config: ml_collections.ConfigDict) -> str:
  """The resolved config as indented JSON (tuples become lists)."""
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
