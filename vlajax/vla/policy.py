"""Deployment: a ``train_vla`` checkpoint -> a jitted ``observation -> action chunk`` function.

``load_policy(path)`` reads the run config from the checkpoint metadata, restores the EMA (or raw)
parameters, and returns ``(fn, info)``. ``fn`` takes ONE unbatched observation dict (C = the model's
cameras, S = image size, L = ``max_token_len``):

  "image":  {"primary": uint8[S, S, 3], "wrist": uint8[S, S, 3]}   the first C of ``CAMERAS``
  "state":  float32[p]      robot state in the dataset's units (p = its proprio dims when the run
                            saved normalization statistics, else the model's ``state_dim``)
  "prompt": str             with ``prompt="text"`` (tokenized with the run's tokenizer), or
  "tokens": int32[L], "token_mask": bool[L]                          with ``prompt="tokens"``

and returns the action chunk float32[H, a]: H = ``action_horizon``; a = the dataset's native action
dims, un-normalized with the statistics saved beside the checkpoints (``normalization.json``) when
there are any, else the model's ``action_dim``. Sampling is the KV-cached 10-step Euler sampler
(``Pi0.sample_actions``). ``info`` holds model_id, action_horizon (= chunk_length), action_dim, the
observation spec in wire form (``{"shape", "dtype"}`` leaves; dtype "str" for the prompt), and
control_hz when the run config records one (``data.control_hz``).
"""
from __future__ import annotations

import pathlib
import threading
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vlajax.core.checkpoint import Checkpointer
from vlajax.data.normalization import EPS
from vlajax.vla import config as vla_config
from vlajax.vla import data_sources
from vlajax.vla import train as train_lib
from vlajax.vla.pi0 import Pi0
from vlajax.vla.tokenizer import ByteTokenizer, load_tokenizer

CAMERAS = ("primary", "wrist")
PROMPT_MODES = ("text", "tokens")


def _checkpoint_dir(path: pathlib.Path) -> pathlib.Path:
  return path / "checkpoints" if (path / "checkpoints").is_dir() else path


def restore_params(path: str | pathlib.Path, step: int | None = None, use_ema: bool = True):
  """Returns (model, params, run config dict, metadata, which) from a ``train_vla`` checkpoint;
  ``which`` is "ema_params" or "params"."""
  ckpt_dir = _checkpoint_dir(pathlib.Path(path))
  if not ckpt_dir.is_dir():
    raise FileNotFoundError(f"no VLA checkpoint directory at {ckpt_dir}")
  checkpointer = Checkpointer(ckpt_dir, max_to_keep=None)
  meta = checkpointer.metadata(step)
  if "config" not in meta:
    raise ValueError(f"checkpoint in {ckpt_dir} (step {meta.get('step')}) has no run config in its "
                     "metadata; it was written before train_vla saved one")
  config = meta["config"]
  model = Pi0(vla_config.from_model_section(config["model"]))
  freeze = config["model"].get("freeze", "none")
  key = jax.random.PRNGKey(0)
  example = _zeros_obs_batch(model.config, with_actions=True)
  abstract = jax.eval_shape(lambda k: train_lib.cast_frozen(model.init(k, example, k), freeze,
                                                            model.config.compute_dtype), key)
  which = "ema_params" if use_ema and config.get("optim", {}).get("ema_decay") else "params"
  params = checkpointer.restore({which: abstract}, step=step, partial=True)[which]
  checkpointer.close()
  return model, params, config, meta, which


def _zeros_obs_batch(cfg: vla_config.Pi0Config, with_actions: bool = False) -> dict:
  from vlajax.vla import batch as batch_lib  # pylint: disable=import-outside-toplevel
  batch = batch_lib.zeros_batch(cfg, 1)
  if not with_actions:
    batch.pop("actions")
  return batch


def _dataset_normalization(norm: Mapping[str, Any] | None, dataset_name: str | None):
  """(name, that dataset's entry, mode) from a run's normalization info, or (None, None, "none")."""
  if not norm:
    if dataset_name:
      raise ValueError(f"dataset_name={dataset_name!r} given, but the run saved no normalization statistics")
    return None, None, "none"
  datasets = norm["datasets"]
  if not dataset_name:
    if len(datasets) != 1:
      raise ValueError(f"the run trained on several datasets {sorted(datasets)}; pass dataset_name= "
                       "to pick whose action units to serve")
    dataset_name = next(iter(datasets))
  if dataset_name not in datasets:
    raise KeyError(f"unknown dataset_name {dataset_name!r}; the run has statistics for {sorted(datasets)}")
  return dataset_name, datasets[dataset_name], norm["mode"]


def _restore_for_serving(path, step, use_ema: bool, dataset_name: str | None):
  """What both loaders need: (run_dir, model, params, config, meta, which, cameras, dataset name,
  its normalization entry (or None), mode, state_dim, action_dim)."""
  run_dir = _checkpoint_dir(pathlib.Path(path)).parent
  model, params, config, meta, which = restore_params(path, step, use_ema)
  cfg = model.config
  name, norm, mode = _dataset_normalization(data_sources.load_normalization(run_dir), dataset_name)
  cameras = CAMERAS[:cfg.num_cameras]
  if len(cameras) < cfg.num_cameras:
    raise ValueError(f"the model has {cfg.num_cameras} cameras; serving knows only {CAMERAS}")
  state_dim = int(norm["proprio_dim"]) if norm else cfg.state_dim
  action_dim = int(norm["action_dim"]) if norm else cfg.action_dim
  if state_dim > cfg.state_dim or action_dim > cfg.action_dim:
    raise ValueError(f"dataset {name!r} has {state_dim} state / {action_dim} action dims; the model "
                     f"has {cfg.state_dim} / {cfg.action_dim}")
  return (run_dir, model, params, config, meta, which, cameras, name, norm, mode, state_dim,
          action_dim)


def _chunk_sampler(model, norm, mode: str, action_dim: int, state_dim: int, num_steps: int):
  """`sample(params, images uint8[B, C, S, S, 3], tokens, token_mask, state f32[B, p], rng) ->
  f32[B, H, a]`: the dataset-unit state normalized and padded, the model's Euler sampler, the
  actions cut to the dataset's dims and un-normalized (traceable)."""
  cfg = model.config

  def sample(params, images, tokens, token_mask, state, rng):
    if norm is not None and norm.get("proprio") and state_dim:
      state = _normalize(state, norm["proprio"], mode, norm["proprio_normalize_mask"])
    state = jnp.pad(jnp.asarray(state, jnp.float32),
                    ((0, 0), (0, cfg.state_dim - state.shape[-1])))
    obs = {"images": images.astype(jnp.float32) / 127.5 - 1.0,
           "image_mask": jnp.ones(images.shape[:2], bool),
           "tokens": tokens, "token_mask": token_mask, "state": state}
    chunk = model.apply(params, obs, rng, num_steps, method=Pi0.sample_actions)[..., :action_dim]
    if norm is not None:
      chunk = _unnormalize(chunk, norm["action"], mode, norm["action_normalize_mask"])
    return chunk
  return sample


def _tokenizer(config: Mapping[str, Any], cfg):
  """The run's tokenizer: its configured one, else the byte tokenizer the model was built with."""
  model_section = config["model"]
  if model_section.get("tokenizer"):
    return load_tokenizer(model_section["tokenizer"], cfg.max_token_len)
  return ByteTokenizer(cfg.vocab_size, cfg.max_token_len)


def load_batched_policy(path: str | pathlib.Path, step: int | None = None, *,
                        use_ema: bool = True, num_steps: int = 10,
                        dataset_name: str | None = None,
                        prompts: Sequence[str] | None = None) -> tuple[Callable, dict]:
  """A ``train_vla`` checkpoint -> ``(chunk_fn, info)`` for batched, jitted closed-loop rollouts.

  ``chunk_fn(obs, rng) -> f32[B, H, a]`` is traceable (jit it, or call it inside a rollout's scan;
  ``policies.chunking`` adapts it to a step policy). ``obs``: ``"images"`` {camera: uint8[B, S, S,
  3]} for the model's cameras, ``"state"`` f32[B, p] in the dataset's units, ``"tokens"`` i32[B, L]
  and ``"token_mask"`` bool[B, L] (pre-tokenized: tokenizing is host work; tokenize an env's
  instruction table once: with ``prompts``, ``info["prompt_tokens"]`` is ``(i32[n, L], bool[n, L])``
  for them, from the run's tokenizer). Normalization as ``load_policy``; ``info`` as
  ``load_policy``'s without the wire observation spec (``prompt`` = "tokens"), plus ``image_size``.
  """
  (run_dir, model, params, config, meta, which, cameras, name, norm, mode, state_dim,
   action_dim) = _restore_for_serving(path, step, use_ema, dataset_name)
  cfg = model.config
  sample = _chunk_sampler(model, norm, mode, action_dim, state_dim, num_steps)

  def chunk_fn(obs: Mapping[str, Any], rng: jax.Array) -> jax.Array:
    missing = [k for k in ("images", "state", "tokens", "token_mask") if k not in obs]
    missing += [f"images/{c}" for c in cameras if c not in obs.get("images", {})]
    if missing:
      raise KeyError(f"batched VLA observation is missing {missing}")
    images = jnp.stack([jnp.asarray(obs["images"][c]) for c in cameras], axis=1)
    if images.shape[2:] != (cfg.vision.image_size, cfg.vision.image_size, 3):
      raise ValueError(f"images have shape {images.shape[2:]} per camera, the model takes "
                       f"{(cfg.vision.image_size, cfg.vision.image_size, 3)}")
    if obs["state"].shape[-1] != state_dim:
      raise ValueError(f"state has {obs['state'].shape[-1]} dims, expected {state_dim}")
    return sample(params, images, obs["tokens"], obs["token_mask"], obs["state"], rng)

  info = {"model_id": f"vla:{config['model']['preset']}:{run_dir.name}@{meta['step']}",
          "action_horizon": cfg.action_horizon, "chunk_length": cfg.action_horizon,
          "action_size": action_dim, "action_dim": action_dim, "state_dim": state_dim,
          "cameras": list(cameras),
          "step": int(meta["step"]), "params": which, "prompt": "tokens", "dataset_name": name,
          "normalization": mode, "max_token_len": cfg.max_token_len,
          "image_size": cfg.vision.image_size}
  control_hz = config.get("data", {}).get("control_hz")
  if control_hz:
    info["control_hz"] = float(control_hz)
  if prompts is not None:
    tokens, token_mask = _tokenizer(config, cfg)(list(prompts))
    info["prompt_tokens"] = (np.asarray(tokens, np.int32), np.asarray(token_mask, bool))
  return chunk_fn, info


def load_policy(path: str | pathlib.Path, step: int | None = None, *, use_ema: bool = True,
                num_steps: int = 10, prompt: str = "text", dataset_name: str | None = None,
                seed: int = 0, fixed_noise: bool = False) -> tuple[Callable[..., np.ndarray], dict]:
  """A ``train_vla`` run directory (or its ``checkpoints/``) -> ``(fn, info)`` (see the module doc).

  Args:
    step: checkpoint step (default: the newest).
    use_ema: serve the EMA parameters when the run kept them.
    num_steps: Euler steps of the sampler.
    prompt: "text" (observation["prompt"] is a string) or "tokens" (pre-tokenized).
    dataset_name: whose statistics un-normalize the actions (needed when the run mixed datasets).
    seed, fixed_noise: ``fn(obs)`` draws its noise from ``fold_in(PRNGKey(seed), call index)``, or
      always from ``PRNGKey(seed)`` with ``fixed_noise``; ``fn(obs, rng=key)`` uses ``key``.
  """
  if prompt not in PROMPT_MODES:
    raise ValueError(f"prompt={prompt!r}; choose one of {PROMPT_MODES}")
  (run_dir, model, params, config, meta, which, cameras, name, norm, mode, state_dim,
   action_dim) = _restore_for_serving(path, step, use_ema, dataset_name)
  cfg = model.config

  s = cfg.vision.image_size
  spec = {"image": {cam: {"shape": [s, s, 3], "dtype": "uint8"} for cam in cameras},
          "state": {"shape": [state_dim], "dtype": "float32"}}
  if prompt == "text":
    spec["prompt"] = {"shape": [], "dtype": "str"}
    tokenizer = _tokenizer(config, cfg)
  else:
    spec["tokens"] = {"shape": [cfg.max_token_len], "dtype": "int32"}
    spec["token_mask"] = {"shape": [cfg.max_token_len], "dtype": "bool"}
    tokenizer = None

  sample = _chunk_sampler(model, norm, mode, action_dim, state_dim, num_steps)
  sample = jax.jit(sample)
  base_key = jax.random.PRNGKey(seed)
  counter = {"calls": 0}
  lock = threading.Lock()

  def next_key():
    if fixed_noise:
      return base_key
    with lock:
      counter["calls"] += 1
      return jax.random.fold_in(base_key, counter["calls"])

  def fn(observation: Mapping[str, Any], rng: jax.Array | None = None) -> np.ndarray:
    """One observation (see the module doc) -> float32[H, a] action chunk."""
    obs = _validated(observation, spec)
    images = np.stack([obs["image"][cam] for cam in cameras])[None]
    state = np.asarray(obs["state"], np.float32)[None]
    if tokenizer is not None:
      tokens, token_mask = tokenizer([obs["prompt"]])
    else:
      tokens, token_mask = obs["tokens"][None], obs["token_mask"][None]
    chunk = sample(params, images, tokens, token_mask, state, next_key() if rng is None else rng)
    return np.asarray(chunk[0], np.float32)

  info = {
      "model_id": f"vla:{config['model']['preset']}:{run_dir.name}@{meta['step']}",
      "action_horizon": cfg.action_horizon, "chunk_length": cfg.action_horizon,
      "action_size": action_dim, "action_dim": action_dim,
      "observation_spec": spec, "step": int(meta["step"]), "params": which, "cameras": list(cameras),
      "prompt": prompt, "dataset_name": name, "normalization": mode,
  }
  control_hz = config.get("data", {}).get("control_hz")
  if control_hz:
    info["control_hz"] = float(control_hz)
  return fn, info


# The formulas of ``vlajax.data.normalization`` (which would import TensorFlow to check its input type).
def _normalize(x: np.ndarray, stats: Mapping[str, Any], mode: str, mask) -> np.ndarray:
  """Native state -> the normalized units the model was trained on (masked-out dims unchanged)."""
  x = jnp.asarray(x, jnp.float32)
  if mode == "normal":
    y = (x - jnp.asarray(stats["mean"], jnp.float32)) / (jnp.asarray(stats["std"], jnp.float32) + EPS)
  elif mode == "bounds":
    lo, hi = jnp.asarray(stats["q01"], jnp.float32), jnp.asarray(stats["q99"], jnp.float32)
    y = jnp.clip(2.0 * (x - lo) / (hi - lo + EPS) - 1.0, -1.0, 1.0)
  else:
    return x
  return jnp.where(jnp.asarray(mask, bool), y, x)


def _unnormalize(y: jnp.ndarray, stats: Mapping[str, Any], mode: str, mask) -> jnp.ndarray:
  """Model actions -> the dataset's units (inverse of the training normalization)."""
  if mode == "normal":
    x = y * (jnp.asarray(stats["std"], jnp.float32) + EPS) + jnp.asarray(stats["mean"], jnp.float32)
  elif mode == "bounds":
    lo, hi = jnp.asarray(stats["q01"], jnp.float32), jnp.asarray(stats["q99"], jnp.float32)
    x = (y + 1.0) / 2.0 * (hi - lo + EPS) + lo
  else:
    return y
  return jnp.where(jnp.asarray(mask, bool), x, y)


def _validated(observation: Mapping[str, Any], spec: Mapping[str, Any], prefix: str = "") -> dict:
  """Checks keys, shapes and dtypes against the wire spec; raises KeyError / ValueError naming the field."""
  if not isinstance(observation, Mapping):
    raise ValueError(f"observation field {prefix.rstrip('/') or '<root>'!r} must be a dict, "
                     f"got {type(observation).__name__}")
  out = {}
  for key, leaf in spec.items():
    path = prefix + key
    if key not in observation:
      raise KeyError(f"observation is missing field {path!r} (expected {sorted(spec)})")
    value = observation[key]
    if "dtype" not in leaf:
      out[key] = _validated(value, leaf, path + "/")
      continue
    if leaf["dtype"] == "str":
      if isinstance(value, bytes):
        value = value.decode()
      if not isinstance(value, str):
        raise ValueError(f"observation field {path!r} must be a string, got {type(value).__name__}")
      out[key] = value
      continue
    arr = np.asarray(value)
    if tuple(arr.shape) != tuple(leaf["shape"]):
      raise ValueError(f"observation field {path!r} has shape {arr.shape}, expected {tuple(leaf['shape'])}")
    want = np.dtype(leaf["dtype"])
    if want.kind == "f" and arr.dtype.kind in "fiu":
      arr = arr.astype(want)
    elif arr.dtype != want:
      raise ValueError(f"observation field {path!r} has dtype {arr.dtype}, expected {want}")
    out[key] = arr
  return out
