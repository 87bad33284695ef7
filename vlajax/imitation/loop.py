"""The imitation training loop: batches -> jitted steps -> metrics, held-out eval, checkpoints.

  result = loop.train(trainer, make_data, run_dir, LoopConfig(steps=2000), to_batch=...)

`make_data(state)` returns `(train, held_out)` iterators with `next_local()` (and the train one a
`state()`, a JSON dict of its position, e.g. `vlajax.data.loader.DataLoader`); `state` is None
for a fresh run, else the position saved with the checkpoint, so a resumed run (after a SIGKILL,
at any point) continues with exactly the next batch and the same RNG: its parameters equal an
uninterrupted run's bit for bit. The run directory gets `metrics.jsonl`, TensorBoard events and
`checkpoints/` (orbax: full state, data position, `metadata`).
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Callable

import jax
import numpy as np

from vlajax.core.checkpoint import Checkpointer
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


def train(trainer: train_lib.Trainer, make_data: Callable[[dict | None], tuple[Any, Any]],
          run_dir: str | pathlib.Path, config: LoopConfig,
          to_batch: Callable[[dict], dict], metadata: dict | None = None,
          on_checkpoint: Callable[[int], None] | None = None) -> dict:
  """Runs (or resumes) training; returns {"state", "losses": [(step, loss)], "eval", "run_dir"}.

  `to_batch(data batch) -> head batch` (`imitation.batch.from_data`); `metadata` (JSON) is saved
  with every checkpoint. Raises FileExistsError for a run directory with checkpoints when
  `config.resume` is False.
  """
  run_dir = pathlib.Path(run_dir)
  ckpt = Checkpointer(run_dir / "checkpoints", max_to_keep=config.keep_checkpoints)
  state = trainer.init(jax.random.PRNGKey(config.seed))
  start, data_state = 0, None
  if ckpt.latest_step() is not None:
    if not config.resume:
      raise FileExistsError(f"{run_dir} already holds checkpoints and resume is False")
    state = ckpt.restore(state)
    saved = ckpt.metadata()
    start, data_state = int(saved["step"]), saved["data"]
  train_data, held_out = make_data(data_state)
  writer = MetricWriter(run_dir, total_steps=config.steps)
  losses, last_eval = [], {}
  window_start, window_steps = time.perf_counter(), 0
  try:
    for step in range(start, config.steps):
      batch = to_batch(train_data.next_local())
      state, metrics = trainer.step(state, batch)
      window_steps += 1
      n = step + 1
      if n % config.log_every == 0 or n == config.steps:
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        elapsed = time.perf_counter() - window_start
        scalars["examples_per_sec"] = (window_steps * batch["actions"].shape[0]
                                       / max(elapsed, 1e-9))
        writer.write(n, scalars)
        losses.append((n, scalars["loss"]))
        window_start, window_steps = time.perf_counter(), 0
      if config.eval_every and held_out is not None and (
          n % config.eval_every == 0 or n == config.steps):
        params = state.ema_params if state.ema_params is not None else state.params
        last_eval = {k: float(v) for k, v in jax.device_get(trainer.evaluate(
            params, to_batch(held_out.next_local()), jax.random.PRNGKey(n))).items()}
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
