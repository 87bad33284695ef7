"""Run directories and metric writers: JSONL, TensorBoard events and a progress line with ETA."""
from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from typing import Any, Mapping

import jax
import numpy as np

from vlajax.core import config as config_lib


def prepare_run_dir(workdir: str | pathlib.Path, config=None) -> pathlib.Path:
  """Creates `workdir` and writes the resolved config to `config.json` (process 0 only)."""
  run_dir = pathlib.Path(workdir).absolute()
  run_dir.mkdir(parents=True, exist_ok=True)
  if config is not None and jax.process_index() == 0:
    (run_dir / "config.json").write_text(config_lib.to_json(config))
  return run_dir


def _scalar(value: Any) -> float | None:
  try:
    array = np.asarray(value)
  except Exception:  # pylint: disable=broad-except
    return None
  if array.size != 1 or not np.issubdtype(array.dtype, np.number):
    return None
  value = float(array.reshape(()))
  return None if math.isnan(value) else value


class MetricWriter:
  """Writes scalar metrics to `run_dir/metrics.jsonl`, TensorBoard and stdout.

  `total_steps` enables the progress line (steps/s and ETA). Only process 0 writes unless
  `enabled` is set explicitly.
  """

  def __init__(self, run_dir: str | pathlib.Path, total_steps: int | None = None,
               enabled: bool | None = None, tensorboard: bool = True, stream=sys.stdout):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.total_steps = total_steps
    self.stream = stream
    self._start_time = time.time()
    self._start_step: int | None = None
    self._jsonl = None
    self._tb = None
    if self.enabled:
      run_dir = pathlib.Path(run_dir)
      run_dir.mkdir(parents=True, exist_ok=True)
      self._jsonl = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
      if tensorboard:
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
        self._tb = SummaryWriter(str(run_dir / "tensorboard"))

  def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Writes the scalar entries of `metrics` at `step` (NaN = "no value yet" is skipped)."""
    scalars = {k: v for k, v in ((k, _scalar(v)) for k, v in metrics.items()) if v is not None}
    if not self.enabled:
      return scalars
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for key, value in scalars.items():
        self._tb.add_scalar(key, value, int(step))
      self._tb.flush()
    if self.stream is not None:
      self.stream.write(self._progress_line(int(step), scalars) + "\n")
      self.stream.flush()
    return scalars

  def _progress_line(self, step: int, scalars: Mapping[str, float]) -> str:
    if self._start_step is None:
      self._start_step, self._start_time = step, time.time()
    elapsed = time.time() - self._start_time
    rate = (step - self._start_step) / elapsed if elapsed > 0 and step > self._start_step else 0.0
    rate = scalars.get("perf/env_steps_per_s", rate)  # the learner's own measure, when it has one
    parts = [f"step {step:,}"]
    if self.total_steps:
      frac = min(step / self.total_steps, 1.0)
      bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
      eta = (self.total_steps - step) / rate if rate > 0 else math.nan
      parts = [f"[{bar}] {step:,}/{self.total_steps:,}", f"{rate:,.0f} steps/s",
               f"ETA {_duration(eta)}"]
    shown = [k for k in ("eval/episode_return", "episode/return", "loss", "train/loss") if k in scalars]
    parts += [f"{k}={scalars[k]:.4g}" for k in shown]
    return "  ".join(parts)

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
