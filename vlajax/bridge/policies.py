"""One `infer(observation) -> action chunk` interface over every policy the project trains.

A `ServedPolicy` wraps a function from one (unbatched) observation dict to an action chunk
``float32[H, D]`` together with the specs the server advertises. Loaders are registered by kind:

* ``"callable"``: any Python function ``obs -> chunk`` (given directly or as ``"module:attr"``),
  with explicit specs; used by tests and benchmarks.
* ``"ppo"``: a PPO checkpoint written by `vlajax.rl.ppo` (``load_policy(path)`` gives a jitted
  ``obs -> action`` function); the chunk is that single action, ``H = 1``.
* ``"vla"``: a VLA checkpoint loaded through `vlajax.vla` (see `_load_vla`).

`load_policy(kind, **kwargs)` builds one and warms its jit cache with a zero observation.
"""
from __future__ import annotations

import dataclasses
import importlib
import pathlib
import time
from typing import Any, Callable, Mapping

import numpy as np

from vlajax.bridge import protocol

ChunkFn = Callable[[dict], Any]
_LOADERS: dict[str, Callable[..., "ServedPolicy"]] = {}


@dataclasses.dataclass
class ServedPolicy:
  """A policy behind the server.

  infer_fn: observation dict (conforming to `observation_spec`) -> action chunk, array-like of
    shape ``(chunk_length, action_dim)`` (a ``(action_dim,)`` result is treated as ``H = 1``).
  """

  infer_fn: ChunkFn
  observation_spec: dict
  action_dim: int
  chunk_length: int
  control_hz: float
  model_id: str
  extra_metadata: dict = dataclasses.field(default_factory=dict)

  @property
  def action_spec(self) -> dict:
    return {"actions": protocol.ArraySpec((self.chunk_length, self.action_dim), "float32")}

  def metadata(self) -> dict:
    return protocol.make_metadata(
        observation_spec=self.observation_spec, action_spec=self.action_spec,
        control_hz=self.control_hz, chunk_length=self.chunk_length, model_id=self.model_id,
        extra=self.extra_metadata)

  def infer(self, observation: Mapping) -> dict:
    """Validated observation -> ``{"actions": float32[H, D], "policy_timing": {"infer_ms"}}``.

    Raises `protocol.ProtocolError` if the policy returns a chunk of the wrong shape or with
    non-finite values (the server turns that into an ``InternalError`` reply, never into an
    action); the messages name no model id or path, since the server forwards them.
    """
    start = time.perf_counter()
    chunk = np.asarray(self.infer_fn(dict(observation)), dtype=np.float32)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    if chunk.ndim == 1:
      chunk = chunk[None]
    if chunk.shape != (self.chunk_length, self.action_dim):
      raise protocol.ProtocolError(
          f"the policy returned actions of shape {chunk.shape}, "
          f"expected {(self.chunk_length, self.action_dim)}")
    if not np.all(np.isfinite(chunk)):
      raise protocol.ProtocolError("the policy returned non-finite actions")
    return {"actions": chunk, "policy_timing": {"infer_ms": elapsed_ms}}

  def warmup(self, repeats: int = 2) -> float:
    """Runs `repeats` zero observations through the policy (jit compile); returns seconds."""
    start = time.perf_counter()
    dummy = protocol.zeros_like_spec(self.observation_spec)
    for _ in range(repeats):
      self.infer(dummy)
    return time.perf_counter() - start


def register_loader(kind: str):
  """Decorator: registers `fn(**kwargs) -> ServedPolicy` under `kind`."""
  def wrap(fn):
    _LOADERS[kind] = fn
    return fn
  return wrap


def loader_kinds() -> list[str]:
  return sorted(_LOADERS)


def load_policy(kind: str, *, warmup: bool = True, **kwargs) -> ServedPolicy:
  """Builds the policy of `kind` from `kwargs` (see the loaders) and jit-warms it."""
  if kind not in _LOADERS:
    raise KeyError(f"unknown policy kind '{kind}'; known kinds: {loader_kinds()}")
  policy = _LOADERS[kind](**kwargs)
  if warmup:
    policy.warmup()
  return policy


def _resolve(fn: ChunkFn | str) -> ChunkFn:
  if callable(fn):
    return fn
  module, _, attr = str(fn).partition(":")
  if not attr:
    raise ValueError(f"callable must be 'module:attribute', got {fn!r}")
  return getattr(importlib.import_module(module), attr)


def _as_spec(spec: Mapping) -> dict:
  """Accepts ArraySpec leaves, ``{"shape", "dtype"}`` dicts or ``(shape, dtype)`` tuples."""
  out = {}
  for key, value in spec.items():
    if isinstance(value, protocol.ArraySpec):
      out[key] = value
    elif isinstance(value, tuple) and len(value) == 2:
      out[key] = protocol.ArraySpec(tuple(value[0]), str(value[1]))
    elif isinstance(value, Mapping) and set(value) == {"shape", "dtype"}:
      out[key] = protocol.ArraySpec.from_wire(value)
    elif isinstance(value, Mapping):
      out[key] = _as_spec(value)
    else:
      raise TypeError(f"observation_spec['{key}'] must be an ArraySpec, (shape, dtype) or dict")
  return out


@register_loader("callable")
def _load_callable(*, fn: ChunkFn | str, observation_spec: Mapping, action_dim: int,
                   chunk_length: int = 1, control_hz: float = 50.0, model_id: str = "callable",
                   **extra) -> ServedPolicy:
  return ServedPolicy(_resolve(fn), _as_spec(observation_spec), int(action_dim), int(chunk_length),
                      float(control_hz), model_id, extra_metadata=dict(extra))


def _run_name(path: str) -> str:
  """The run directory's name for a served model id: metadata goes to every client, so it never
  carries a server path."""
  run = pathlib.Path(path)
  return (run.parent if run.name == "checkpoints" else run).name


@register_loader("ppo")
def _load_ppo(*, path: str, step: int | None = None, control_hz: float | None = None,
              model_id: str | None = None) -> ServedPolicy:
  """PPO run directory (or its ``checkpoints/``) -> an ``H = 1`` policy over its policy observation.

  Uses `vlajax.rl.ppo.load_policy`, a jitted deterministic ``obs -> action in [-1, 1]``; the
  observation spec is the env's policy observation (e.g. ``{"state": float32[48]}``) and the
  control rate the env's ``1 / ctrl_dt``.
  """
  from vlajax.rl import ppo  # pylint: disable=import-outside-toplevel

  policy, info = ppo.load_policy(path, step)
  key = info["obs_key"]
  obs_spec = {key: protocol.ArraySpec(tuple(info["observation_size"][key]), "float32")}
  env_config = info["config"].get("env", {})
  env_name = info["config"].get("env_name", "")
  if control_hz is None:
    control_hz = 1.0 / float(env_config["ctrl_dt"]) if "ctrl_dt" in env_config else 50.0

  def infer_fn(observation: dict) -> np.ndarray:
    return np.asarray(policy({key: observation[key]}))

  return ServedPolicy(infer_fn, obs_spec, int(info["action_size"]), 1, float(control_hz),
                      model_id or f"ppo:{env_name}:{_run_name(path)}",
                      extra_metadata={"kind": "ppo", "env_name": env_name})


@register_loader("vla")
def _load_vla(*, path: str, control_hz: float = 10.0, model_id: str | None = None,
              **kwargs) -> ServedPolicy:
  """VLA checkpoint -> chunk policy via `vlajax.vla.load_policy(path, **kwargs)`.

  That function must return ``(fn, info)`` with ``fn(observation) -> float[H, D]`` and ``info``
  holding ``observation_spec`` (wire form), ``action_size`` D and ``action_horizon`` H (the keys
  every loader shares, `vlajax.eval.policies`); kwargs such as
  ``step``, ``use_ema``, ``num_steps``, ``prompt`` ("text" | "tokens") and ``dataset_name`` pass
  through. The served metadata adds the checkpoint step, which parameters (EMA or raw), the
  prompt mode and the dataset whose action units are served.
  """
  vla = importlib.import_module("vlajax.vla")
  if not hasattr(vla, "load_policy"):
    raise NotImplementedError("vlajax.vla.load_policy is not available; cannot serve a VLA checkpoint")
  fn, info = vla.load_policy(path, **kwargs)
  return ServedPolicy(fn, _as_spec(info["observation_spec"]), int(info["action_size"]),
                      int(info["action_horizon"]), float(info.get("control_hz", control_hz)),
                      model_id or info.get("model_id", f"vla:{_run_name(path)}"),
                      extra_metadata={"kind": "vla", **{k: info[k] for k in (
                          "step", "params", "prompt", "dataset_name", "normalization") if k in info}})
