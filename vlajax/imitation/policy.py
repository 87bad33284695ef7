"""Training an action head on a demo dataset, and loading the trained policy back.

`train(config, run_dir, mesh)` (the `experiments/configs/train_policy.py` layout) registers the
demo dataset (`vlajax.imitation.collect`), builds the head (`policies.heads.make_head`) and runs the
library loop (`imitation.loop`). It writes `policy.json`: the head and its fields, the batch
spec, the dataset's normalization statistics and the env the demos came from.

`load_policy(run_dir)` returns `(policy, info)` like every loader: `policy(obs, rng) -> f32[B, H,
A]` chunks in the env's action space (unnormalized, gripper back to -1 / +1), from raw env-side
observations `{"proprio": f32[B, (T,) P] unnormalized, "image_<camera>": u8[B, (T,) h, w, 3]}`;
`info` has the observation spec, `action_size`, `action_horizon`, `execute`, `cameras`,
`image_size` and `env_name`. Neither import TensorFlow until `train` reads data (a process that
renders cannot hold TensorFlow: `vlajax.imitation.collect.write`).
"""
from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vlajax.core import atomic
from vlajax.data import normalization
from vlajax.imitation import batch as batch_lib
from vlajax.imitation import collect
from vlajax.imitation import loop as loop_lib
from vlajax.imitation import train as train_lib
from vlajax.policies import heads

POLICY_FILE = "policy.json"


def _spec(model_cfg, info: dict) -> batch_lib.BatchSpec:
  cameras = [c for c in str(model_cfg.cameras).split(",") if c]
  for camera in cameras:
    if camera not in info["cameras"]:
      raise KeyError(f"model.cameras names '{camera}'; the dataset '{info['name']}' has "
                     f"{info['cameras']}")
  return batch_lib.BatchSpec(
      action_horizon=int(model_cfg.action_horizon), action_dim=int(info["action_dim"]),
      proprio_dim=int(info[f"{model_cfg.proprio_source}_dim"]) if model_cfg.proprio else 0,
      image_keys=tuple(f"image_{c}" for c in cameras), window=int(model_cfg.window))


def make_model(kind: str, spec: batch_lib.BatchSpec, fields: dict):
  return heads.make_head(kind, spec.action_horizon, spec.action_dim,
                         state_key="proprio" if spec.proprio_dim else None,
                         image_keys=spec.image_keys, **fields)


def example_batch(spec: batch_lib.BatchSpec, batch_size: int, image_size: int) -> dict:
  """Zeros shaped like a head batch (module docstring of `imitation.batch`)."""
  lead = (batch_size,) if spec.window == 1 else (batch_size, spec.window)
  obs = {k: jnp.zeros(lead + (image_size, image_size, 3), jnp.uint8) for k in spec.image_keys}
  if spec.proprio_dim:
    obs["proprio"] = jnp.zeros(lead + (spec.proprio_dim,), jnp.float32)
  actions = jnp.zeros((batch_size, spec.action_horizon, spec.action_dim), jnp.float32)
  return {"obs": obs, "actions": actions, "mask": jnp.ones(actions.shape, bool)}


def _data_config(config, spec: batch_lib.BatchSpec, info: dict, root: str):
  from vlajax.data import config as data_config  # pylint: disable=import-outside-toplevel
  cfg = data_config.default_config()
  cfg.data_root = root
  cfg.weights = {info["name"]: 1.0}
  cfg.train_split, cfg.val_split = "train", config.data.val_split or "train"
  cfg.seed = int(config.train.seed)
  cfg.global_batch_size = int(config.train.batch_size)
  cfg.window, cfg.horizon = spec.window, spec.action_horizon
  cfg.action_dim, cfg.proprio_dim = spec.action_dim, max(spec.proprio_dim, 1)
  cfg.image_size = (int(config.data.image_size),) * 2
  cfg.normalization = config.data.normalization
  cfg.augment = bool(config.data.augment)
  for key in ("episodes_per_window", "windows_per_block", "num_parallel_calls"):
    cfg[key] = int(config.data[key])
  cfg.on_corrupt = config.data.get("on_corrupt", "raise")
  return cfg


def train(config, run_dir: str | pathlib.Path, mesh) -> dict:
  """Trains (or resumes) the head of `config` on its demo dataset; returns `loop.train`'s result."""
  from vlajax.data import loader as loader_lib  # pylint: disable=import-outside-toplevel  (TF)
  from vlajax.data import oxe_registry  # pylint: disable=import-outside-toplevel

  if not config.data.dataset_dir:
    raise ValueError("config.data.dataset_dir is required (a demo dataset's version directory, "
                     "e.g. runs/demos/sim_arm_pick_cube/0.1.0)")
  directory = pathlib.Path(config.data.dataset_dir)
  info = collect.read_info(str(directory))
  if "state_dim" not in info:   # datasets written before state_dim was recorded
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    features = tfds.builder_from_directory(str(directory)).info.features
    info["state_dim"] = int(features["steps"]["observation"]["state"].shape[0])
  collect.register(info, config.model.proprio_source)
  spec = _spec(config.model, info)
  cfg = _data_config(config, spec, info, str(directory.parents[1]))
  run_dir = pathlib.Path(run_dir)
  dirs = {info["name"]: str(directory)}

  def make_data(state):
    train_data = loader_lib.DataLoader(cfg, train=True, stats_dir=str(run_dir), state=state,
                                       dataset_dirs=dirs)
    held_out = None
    if config.data.val_split:
      held_out = loader_lib.DataLoader(cfg, train=False, split=config.data.val_split,
                                       dataset_dirs=dirs, stats=train_data.stats)
    make_data.stats = train_data.stats[info["name"]]
    return train_data, held_out

  fields = dict(config.model.fields)
  model = make_model(config.model.kind, spec, fields)
  example = example_batch(spec, int(config.train.batch_size), int(config.data.image_size))
  trainer = train_lib.build_trainer(model, train_lib.optim_config(config.optim), example,
                                    mesh)
  to_batch = lambda b: batch_lib.from_data(b, spec, info["name"])
  loop_cfg = loop_lib.LoopConfig.from_section(config.train, config.get("run"))

  def write_policy_file(step):
    del step
    stats = make_data.stats
    policy = {
        "kind": config.model.kind, "fields": fields, "spec": {
            "action_horizon": spec.action_horizon, "action_dim": spec.action_dim,
            "proprio_dim": spec.proprio_dim, "image_keys": list(spec.image_keys),
            "window": spec.window},
        "image_size": int(config.data.image_size), "execute": int(config.execute),
        "proprio_source": config.model.proprio_source,
        "normalization": cfg.normalization,
        "action_stats": {k: stats["action"][k] for k in ("mean", "std", "q01", "q99")},
        "action_normalize": list(oxe_registry.spec(info["name"]).normalize_action),
        "proprio_stats": ({k: stats["proprio"][k] for k in ("mean", "std", "q01", "q99")}
                          if "proprio" in stats else None),
        "proprio_normalize": list(oxe_registry.proprio_normalize_mask(info["name"])),
        "dataset": {k: info[k] for k in ("name", "env_name", "action_space", "cameras",
                                         "train_episodes", "frames")},
    }
    atomic.write_json(run_dir / POLICY_FILE, policy, indent=1)

  return loop_lib.train(trainer, make_data, run_dir, loop_cfg, to_batch,
                        metadata={"config": config.to_dict()}, on_checkpoint=write_policy_file)


def load_policy(run_dir: str | pathlib.Path, step: int | None = None, use_ema: bool = True):
  """`(policy, info)` of a `train` run (module docstring)."""
  from vlajax.core.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel

  run_dir = pathlib.Path(run_dir)
  saved = read_policy_file(run_dir)
  spec = batch_lib.BatchSpec(**{**saved["spec"], "image_keys": tuple(saved["spec"]["image_keys"])})
  model = make_model(saved["kind"], spec, saved["fields"])
  example = example_batch(spec, 1, saved["image_size"])
  params = model.init(jax.random.PRNGKey(0), example["obs"], example["actions"],
                      jax.random.PRNGKey(0))
  ckpt = Checkpointer(run_dir / "checkpoints")
  try:
    has_ema = bool(ckpt.metadata(step)["config"]["optim"]["ema_decay"])
    name = "ema_params" if use_ema and has_ema else "params"
    weights = ckpt.restore({name: params}, step, partial=True)[name]
  finally:
    ckpt.close()
  mode = saved["normalization"]
  action_stats, proprio_stats = saved["action_stats"], saved["proprio_stats"]

  @jax.jit
  def policy(obs, rng):
    model_obs = {k: obs[k] for k in spec.image_keys}
    if spec.proprio_dim:
      proprio = jnp.asarray(obs["proprio"], jnp.float32)[..., :spec.proprio_dim]
      if proprio_stats is not None:
        proprio = normalization.normalize(proprio, _cut(proprio_stats, spec.proprio_dim), mode,
                                          saved["proprio_normalize"][:spec.proprio_dim])
      model_obs["proprio"] = proprio
    chunk = model.apply(weights, model_obs, rng, method=model.sample_actions)
    chunk = normalization.unnormalize(chunk, action_stats, mode, saved["action_normalize"])
    return collect.to_env_action(chunk)

  info = {"action_size": spec.action_dim, "action_horizon": spec.action_horizon,
          "execute": int(saved["execute"]), "window": spec.window,
          "cameras": tuple(k.removeprefix("image_") for k in spec.image_keys),
          "image_size": int(saved["image_size"]), "proprio_dim": spec.proprio_dim,
          "env_name": saved["dataset"]["env_name"],
          "action_space": saved["dataset"]["action_space"], "kind": saved["kind"],
          "obs_key": None}
  return policy, info


def read_policy_file(run_dir: str | pathlib.Path) -> dict:
  """The `policy.json` of a `train` run."""
  path = pathlib.Path(run_dir) / POLICY_FILE
  if not path.exists():
    raise FileNotFoundError(f"'{run_dir}' is not a train_policy run: it has no {POLICY_FILE}")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _cut(stats: dict, dim: int) -> dict[str, Any]:
  return {k: list(np.asarray(v, np.float32)[:dim]) for k, v in stats.items()}
