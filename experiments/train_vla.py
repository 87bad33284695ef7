"""Train the pi0-style VLA with flow matching, data-parallel x FSDP over a device mesh.

  python -m experiments.train_vla --config=experiments/configs/train_vla.py:tiny
  python -m experiments.train_vla --config=experiments/configs/train_vla.py:pi0 \
      --config.model.hf_checkpoint=/ckpt/paligemma-3b-pt-224 --config.model.tokenizer=/ckpt/paligemma-3b-pt-224 \
      --config.data.source=rlds --config.data.rlds.data_root=/data/oxe --config.mesh.fsdp=8

A thin main: the model, tokenizer and data sources come from `vlajax.vla`; the trainer and loop are
`vlajax.imitation`'s (the one loop of every chunk policy), given the VLA's hooks (`vlajax.vla.train`:
freezing, frozen weights in bfloat16, the loss with its text-loss parts, the sampler's Euler steps).

The run directory (`config.workdir`) gets `config.json`, `metrics.jsonl`, TensorBoard events, the
library log `train_vla.log` and `checkpoints/` (full train state + data position); re-running the
same command resumes from the newest checkpoint. The checkpoint metadata holds the run config and RLDS runs write `normalization.json`,
so `vlajax.vla.load_policy(run_dir)` can serve the run. Multi-host: set `config.distributed.*` (process 0 writes logs and checkpoints
metadata; every process reads its own rows).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
from absl import app
from ml_collections import config_flags

from vlajax.core import logging_setup
from vlajax.core import mesh as mesh_lib
from vlajax.core.metrics import prepare_run_dir
from vlajax.imitation import loop as loop_lib
from vlajax.imitation import train as imitation_train
from vlajax.vla import batch as batch_lib
from vlajax.vla import config as vla_config
from vlajax.vla import data_sources, hf_import
from vlajax.vla import train as vla_train
from vlajax.vla.pi0 import Pi0
from vlajax.vla.synthetic import SyntheticVLADataset
from vlajax.vla.tokenizer import ByteTokenizer, load_tokenizer

def model_config(model) -> vla_config.Pi0Config:
  """The preset named by ``model.preset`` with the fields that are not -1 overridden."""
  return vla_config.from_model_section(model)


@functools.lru_cache(maxsize=8)
def make_trainer(model: Pi0, optim: imitation_train.OptimConfig, mesh, freeze: str = "none",
                 min_shard_size: int = 1024, sample_steps: int = 10) -> imitation_train.Trainer:
  """The imitation trainer with the VLA's hooks, built once per distinct argument set (repeated
  runs in one process reuse its compilations). Its batches are ``vla.batch.to_head_batch``'s."""
  example = batch_lib.to_head_batch(batch_lib.zeros_batch(model.config, 1))
  cast = functools.partial(vla_train.cast_frozen, freeze=freeze,
                           compute_dtype=model.config.compute_dtype)
  return imitation_train.build_trainer(
      model, optim, example, mesh, is_frozen=vla_train.frozen_predicate(freeze), cast_params=cast,
      loss_fn=vla_train.loss_fn, sample_kwargs={"num_steps": sample_steps},
      min_shard_size=min_shard_size)


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
  """Imported PaliGemma weights (host numpy) for ``model.hf_checkpoint``."""
  example = batch_lib.zeros_batch(model_cfg)
  key = jax.random.PRNGKey(config.train.seed)
  params = jax.device_get(jax.jit(model.init)(key, example, key))
  return hf_import.load_paligemma(config.model.hf_checkpoint, params, model_cfg)


def train(config, workdir: str | None = None) -> dict[str, Any]:
  """Runs (or resumes) training; returns `vlajax.imitation.loop.train`'s result ({"state",
  "losses": [(step, loss)], "eval": last eval metrics, "run_dir", ...})."""
  workdir = workdir or config.workdir
  devices = jax.devices()[:config.mesh.num_devices] if config.mesh.num_devices > 0 else None
  mesh = mesh_lib.make_mesh({"data": config.mesh.data, "fsdp": config.mesh.fsdp}, devices=devices)
  model_cfg = model_config(config.model)
  model = Pi0(model_cfg, remat=config.model.remat)
  run_dir = prepare_run_dir(workdir, config)
  train_src, eval_src = make_data(config, model_cfg, run_dir)
  shards = mesh_lib.num_batch_shards(mesh)
  if config.train.batch_size % shards:
    raise ValueError(f"train.batch_size={config.train.batch_size} is not divisible by the {shards} batch shards")
  if jax.process_index() == 0 and hasattr(train_src, "normalization_info"):
    data_sources.save_normalization(run_dir, train_src.normalization_info())

  def resume_data(state):
    if state is not None:
      train_src.restore(state)
    return train_src, eval_src

  trainer = make_trainer(model, imitation_train.optim_config(config.optim), mesh, config.model.freeze,
                         config.mesh.min_shard_size, config.train.sample_steps)
  init = functools.partial(initial_params, model, model_cfg, config) if config.model.hf_checkpoint else None
  return loop_lib.train(trainer, resume_data, run_dir,
                        loop_lib.LoopConfig.from_section(config.train, config.run),
                        batch_lib.to_head_batch, init_params=init,
                        metadata={"preset": config.model.preset, "config": config.to_dict()})


def main(argv):
  del argv
  config = _CONFIG.value
  # Library INFO (orbax, import probes) to <workdir>/train_vla.log, not the console.
  logging_setup.setup(config.workdir, process_index=config.distributed.process_id)
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
