"""Train the pi0-style VLA with flow matching, data-parallel x FSDP over a device mesh.

  python -m experiments.train_vla --config=experiments/configs/train_vla.py:tiny
  python -m experiments.train_vla --config=experiments/configs/train_vla.py:pi0 \
      --config.model.hf_checkpoint=/ckpt/paligemma-3b-pt-224 --config.model.tokenizer=/ckpt/paligemma-3b-pt-224 \
      --config.data.source=rlds --config.data.rlds.data_root=/data/oxe --config.mesh.fsdp=8

The run directory (`config.workdir`) gets `config.json`, `metrics.jsonl`, TensorBoard events and
`checkpoints/` (full train state + data position); re-running the same command resumes from the
newest checkpoint. The checkpoint metadata holds the run config and RLDS runs write `normalization.json`,
so `vlajax.vla.load_policy(run_dir)` can serve the run. Multi-host: set `config.distributed.*` (process 0 writes logs and checkpoints
metadata; every process reads its own rows).
"""
from __future__ import annotations

import time
from typing import Any

import jax
from absl import app, logging
from ml_collections import config_flags

from vlajax.core import mesh as mesh_lib
from vlajax.core.checkpoint import Checkpointer
from vlajax.core.metrics import MetricWriter, prepare_run_dir
from vlajax.vla import batch as batch_lib
from vlajax.vla import config as vla_config
from vlajax.vla import data_sources, hf_import
from vlajax.vla import sharding as sharding_lib
from vlajax.vla import train as train_lib
from vlajax.vla.pi0 import Pi0
from vlajax.vla.synthetic import SyntheticVLADataset
from vlajax.vla.tokenizer import ByteTokenizer, load_tokenizer



def model_config(model) -> vla_config.Pi0Config:
  """The preset named by ``model.preset`` with the fields that are not -1 overridden."""
  return vla_config.from_model_section(model)


def optim_config(optim) -> train_lib.OptimConfig:
  values = dict(optim)
  values["ema_decay"] = values["ema_decay"] or None
  return train_lib.OptimConfig(**values)


def make_tokenizer(config, model_cfg):
  if config.model.tokenizer:
    return load_tokenizer(config.model.tokenizer, model_cfg.max_token_len)
  return ByteTokenizer(model_cfg.vocab_size, model_cfg.max_token_len)


def make_data(config, model_cfg, run_dir):
  """Returns (train source, eval source)."""
  d = config.data
  b = config.train.batch_size
  if d.source == "synthetic":
    options = dict(pad_action_dims=d.pad_action_dims, text_targets=d.get("text_targets", False))
    train = SyntheticVLADataset(model_cfg, d.num_train, seed=config.train.seed, **options)
    held_out = SyntheticVLADataset(model_cfg, d.num_eval, seed=config.train.seed + 10_000, **options)
    return (data_sources.SyntheticSource(train, b),
            data_sources.SyntheticSource(held_out, config.train.eval_batch_size))
  if d.source == "rlds":
    tokenize = make_tokenizer(config, model_cfg)
    rlds_cfg = d.rlds.copy_and_resolve_references()
    rlds_cfg.global_batch_size = b
    train = data_sources.RLDSSource(rlds_cfg, model_cfg, tokenize, train=True, stats_dir=str(run_dir))
    eval_cfg = rlds_cfg.copy_and_resolve_references()
    eval_cfg.global_batch_size = config.train.eval_batch_size
    held_out = data_sources.RLDSSource(eval_cfg, model_cfg, tokenize, train=False, stats_dir=str(run_dir))
    return train, held_out
  raise ValueError(f"unknown data.source {d.source!r}; choose 'synthetic' or 'rlds'")


def initial_params(model: Pi0, model_cfg, config):
  """Imported PaliGemma weights (host numpy) when ``model.hf_checkpoint`` is set, else None."""
  if not config.model.hf_checkpoint:
    return None
  example = batch_lib.zeros_batch(model_cfg)
  key = jax.random.PRNGKey(config.train.seed)
  params = jax.device_get(jax.jit(model.init)(key, example, key))
  return hf_import.load_paligemma(config.model.hf_checkpoint, params, model_cfg)


def _compiled(fn, name: str, *args):
  """``fn`` compiled ahead of time for ``args``, then every process waits for the others: CPU (gloo)
  collectives give up after ~30 s, and hosts may compile at different speeds. One process: ``fn``
  itself (its jit cache is shared by repeated runs)."""
  if jax.process_count() == 1:
    return fn
  compiled = fn.lower(*args).compile()
  mesh_lib.barrier(f"compiled_{name}")
  return compiled


def _initial_state(model, optim, mesh, config, model_cfg):
  """A fresh sharded train state (imported weights when configured) and its ``Trainer``."""
  trainer = train_lib.build_trainer(model, optim, mesh, config.model.freeze, config.mesh.min_shard_size)
  key = jax.random.PRNGKey(config.train.seed)
  params = initial_params(model, model_cfg, config)
  if params is None:
    return _compiled(trainer.init, "vla_init", key)(key), trainer
  return _compiled(trainer.init_from, "vla_init", params, key)(params, key), trainer


def train(config, workdir: str | None = None) -> dict[str, Any]:
  """Runs (or resumes) training; returns {"state", "losses": [(step, loss)], "eval": last eval metrics}."""
  workdir = workdir or config.workdir
  devices = jax.devices()[:config.mesh.num_devices] if config.mesh.num_devices > 0 else None
  mesh = mesh_lib.make_mesh({"data": config.mesh.data, "fsdp": config.mesh.fsdp}, devices=devices)
  model_cfg = model_config(config.model)
  model = Pi0(model_cfg, remat=config.model.remat)
  optim = optim_config(config.optim)
  run_dir = prepare_run_dir(workdir, config)
  train_src, eval_src = make_data(config, model_cfg, run_dir)
  shards = sharding_lib.num_batch_shards(mesh)
  if config.train.batch_size % shards:
    raise ValueError(f"train.batch_size={config.train.batch_size} is not divisible by the {shards} batch shards")

  state, trainer = _initial_state(model, optim, mesh, config, model_cfg)
  if jax.process_index() == 0 and hasattr(train_src, "normalization_info"):
    data_sources.save_normalization(run_dir, train_src.normalization_info())
  ckpt = Checkpointer(run_dir / "checkpoints", max_to_keep=config.train.keep_checkpoints)
  start = 0
  if ckpt.latest_step() is not None:
    if not config.train.resume:
      raise FileExistsError(f"{run_dir} already holds checkpoints and train.resume is False")
    state = ckpt.restore(state)
    meta = ckpt.metadata()
    start = int(meta["step"])
    train_src.restore(meta["data"])
    logging.info("resumed from step %d", start)

  train_step = eval_step = None   # compiled on their first batch, then the hosts line up
  steps = config.train.steps
  writer = MetricWriter(run_dir, total_steps=steps)
  losses, last_eval = [], {}
  window_start, window_steps = time.time(), 0
  for step in range(start, steps):
    batch = sharding_lib.shard_batch(train_src.next_local(), mesh)
    if train_step is None:
      train_step = _compiled(trainer.step, "vla_train_step", state, batch)
    state, metrics = train_step(state, batch)
    window_steps += 1
    n = step + 1
    if n % config.train.log_every == 0 or n == steps:
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      elapsed = time.time() - window_start
      metrics["examples_per_sec"] = window_steps * config.train.batch_size / max(elapsed, 1e-9)
      writer.write(n, metrics)
      losses.append((n, metrics["loss"]))
      window_start, window_steps = time.time(), 0
    if config.train.eval_every and (n % config.train.eval_every == 0 or n == steps):
      params = state.ema_params if state.ema_params is not None else state.params
      eval_batch = sharding_lib.shard_batch(eval_src.next_local(), mesh)
      if eval_step is None:
        eval_step = _compiled(train_lib.make_eval_step(model, config.train.sample_steps), "vla_eval_step",
                              params, eval_batch, jax.random.PRNGKey(0))
      last_eval = {k: float(v) for k, v in jax.device_get(
          eval_step(params, eval_batch, jax.random.PRNGKey(n))).items()}
      writer.write(n, last_eval)
    if n % config.train.checkpoint_every == 0 or n == steps:
      ckpt.save(n, state, {"step": n, "data": train_src.state(), "preset": config.model.preset,
                           "config": config.to_dict()})
  ckpt.wait()
  ckpt.close()
  writer.close()
  return {"state": state, "losses": losses, "eval": last_eval, "run_dir": run_dir}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  dist = config.distributed
  if dist.num_processes > 1:
    mesh_lib.initialize_distributed(dist.coordinator_address, dist.num_processes, dist.process_id)
  result = train(config)
  if jax.process_index() == 0:
    print(f"done: final loss {result['losses'][-1][1]:.4f}; eval {result['eval']}; run dir {result['run_dir']}")


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/train_vla.py:tiny",
                                            "Experiment config file and preset name.")
  app.run(main)
