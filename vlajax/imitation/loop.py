"""The imitation training loop: batches -> jitted steps -> metrics, held-out eval, checkpoints.

  result = loop.train(trainer, make_data, run_dir, LoopConfig(steps=2000), to_batch=...)

`make_data(state)` returns `(train, held_out)` iterators with `next_local()` (this process's rows
of each global batch; the train one also a `state()`, a JSON dict of its position, e.g.
`vlajax.data.loader.DataLoader`; `held_out` may be None); `state` is None for a fresh run, else
the position saved with the checkpoint, so a resumed run (after a SIGKILL, at any point)
continues with exactly the next batch and the same RNG: its parameters equal an uninterrupted
run's bit for bit. The run directory gets `metrics.jsonl`, TensorBoard events (loss, its named
parts, grad / param norms, learning rate, examples/s, eval metrics) and `checkpoints/` (orbax:
full state, data position, `metadata`).

Multi-host: every process runs the loop on its own rows (`to_batch` output is assembled into
global arrays over the mesh's batch axes); each jitted program is compiled ahead and the
processes line up before its first collective (`core.mesh.compiled_together`); process 0 writes
metrics, orbax coordinates the checkpoint writes.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Callable

import jax
import numpy as np
from absl import logging

from vlajax.core import mesh as mesh_lib
from vlajax.core.checkpoint import Checkpointer
from vlajax.core import metrics
from vlajax.core.metrics import MetricWriter
from vlajax.imitation import train as train_lib


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  steps: int = 2000
  seed: int = 0
  log_every: int = 50
  eval_every: int = 500            # 0: never
  checkpoint_every: int = 500
  keep_checkpoints: int = 2
  resume: bool = True
  loggers: str | None = None       # metric writers (`core.metrics.LOGGERS`); None: the default
  wandb: Any = None                # W&B settings (`core.metrics.logger_config().wandb`)

  @classmethod
  def from_section(cls, section, run=None) -> "LoopConfig":
    """The loop fields of a config's `train` section (which may hold other keys too), and the
    metric writers of its `run` section (`core.metrics.logger_config()`), if given."""
    writers = {"loggers", "wandb"}
    values = {f.name: section[f.name] for f in dataclasses.fields(cls) if f.name not in writers}
    if run is not None:
      metrics.parse_loggers(run.loggers)   # an unknown name fails here, before any compile
      values.update(loggers=run.loggers, wandb=dict(run.wandb))
    return cls(**values)


def train(trainer: train_lib.Trainer, make_data: Callable[[dict | None], tuple[Any, Any]],
          run_dir: str | pathlib.Path, config: LoopConfig,
          to_batch: Callable[[dict], dict], metadata: dict | None = None,
          on_checkpoint: Callable[[int], None] | None = None,
          init_params: Callable[[], Any] | None = None) -> dict:
  """Runs (or resumes) training; returns {"state", "losses": [(step, loss)], "eval", "run_dir",
  "final_loss", "param_count"}.

  `to_batch(data batch) -> head batch` (host-local rows; `imitation.batch.from_data`);
  `metadata` (JSON) is saved with every checkpoint; `on_checkpoint(step)` runs after each save;
  `init_params()` gives the starting parameters of a fresh run (e.g. imported weights; default:
  the model's initialization) and is not called on resume. Raises FileExistsError for a run
  directory with checkpoints when `config.resume` is False.
  """
  run_dir = pathlib.Path(run_dir)
  ckpt = Checkpointer(run_dir / "checkpoints", max_to_keep=config.keep_checkpoints)
  key = jax.random.PRNGKey(config.seed)
  start, data_state = 0, None
  if ckpt.latest_step() is not None:
    if not config.resume:
      raise FileExistsError(f"{run_dir} already holds checkpoints and resume is False")
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            jax.eval_shape(trainer.init, key), trainer.shardings)
    state = ckpt.restore(abstract)
    saved = ckpt.metadata()
    start, data_state = int(saved["step"]), saved["data"]
    logging.info("resumed from step %d", start)
  elif init_params is None:
    state = mesh_lib.compiled_together(trainer.init, "imitation_init", key)(key)
  else:
    params = init_params()
    state = mesh_lib.compiled_together(trainer.init_from, "imitation_init", params, key)(
        params, key)
  train_data, held_out = make_data(data_state)
  writer = MetricWriter(run_dir, total_steps=config.steps, loggers=config.loggers,
                        wandb=config.wandb, config=(metadata or {}).get("config"))
  step_fn = evaluate = None   # compiled on their first batch (then the hosts line up)
  losses, last_eval = [], {}
  window_start, window_steps = time.perf_counter(), 0
  try:
    for step in range(start, config.steps):
      batch = mesh_lib.shard_batch(to_batch(train_data.next_local()), trainer.mesh)
      if step_fn is None:
        step_fn = mesh_lib.compiled_together(trainer.step, "imitation_step", state, batch)
      state, metrics = step_fn(state, batch)
      window_steps += 1
      n = step + 1
      if n % config.log_every == 0 or n == config.steps:
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        elapsed = time.perf_counter() - window_start
        scalars["examples_per_sec"] = (window_steps * batch["actions"].shape[0]
                                       / max(elapsed, 1e-9))
        scalars.update(getattr(train_data, "metrics", dict)())   # data/skipped_records, ...
        writer.write(n, scalars)
        losses.append((n, scalars["loss"]))
        window_start, window_steps = time.perf_counter(), 0
      if config.eval_every and held_out is not None and (
          n % config.eval_every == 0 or n == config.steps):
        params = state.ema_params if state.ema_params is not None else state.params
        eval_batch = mesh_lib.shard_batch(to_batch(held_out.next_local()), trainer.mesh)
        eval_key = jax.random.PRNGKey(n)
        if evaluate is None:
          evaluate = mesh_lib.compiled_together(trainer.evaluate, "imitation_eval", params,
                                                eval_batch, eval_key)
        last_eval = {k: float(v) for k, v in jax.device_get(
            evaluate(params, eval_batch, eval_key)).items()}
        writer.write(n, last_eval)
      if n % config.checkpoint_every == 0 or n == config.steps:
        ckpt.save(n, state, {"step": n, "data": train_data.state(), **(metadata or {})})
        if on_checkpoint is not None:
          on_checkpoint(n)
  finally:
    ckpt.wait()
    ckpt.close()
    writer.close()
  return {"state": state, "losses": losses, "eval": last_eval, "run_dir": run_dir,
          "final_loss": losses[-1][1] if losses else float("nan"),
          "param_count": int(sum(np.size(x) for x in jax.tree.leaves(state.params)))}
