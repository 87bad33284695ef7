"""Run directories and metric writers: JSONL, TensorBoard events, Weights & Biases and a progress
line with ETA.

Which writers a training run uses is its config's `run.loggers` (`logger_config()`); JSONL is always
written (`launch/sweep.py`, the benchmarks and the tests read `metrics.jsonl`).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import secrets
import string
import sys
import time
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from vlajax.core import atomic
from vlajax.core import config as config_lib

LOGGERS = ("jsonl", "tensorboard", "wandb")
DEFAULT_LOGGERS = "jsonl,tensorboard"
WANDB_MODES = ("online", "offline", "disabled")
WANDB_RUN_ID_FILE = "wandb_run_id"


def logger_config() -> ml_collections.ConfigDict:
  """The metric-writer settings every training config holds in its `run` section.

    loggers   comma-separated writers from `LOGGERS`: jsonl (always written; naming it is
              optional), tensorboard, wandb (Weights & Biases: `pip install -e ".[wandb]"`)
    wandb     project; entity ("": your default entity); name ("": the run directory's name);
              group; tags (comma-separated); mode ("": W&B's own choice, i.e. `WANDB_MODE` or
              online; else online | offline | disabled)
  """
  return ml_collections.ConfigDict({
      "loggers": DEFAULT_LOGGERS,
      "wandb": ml_collections.ConfigDict({
          "project": "vlajax", "entity": "", "name": "", "group": "", "tags": "", "mode": ""}),
  })


def parse_loggers(loggers: str | Sequence[str] | None, key: str = "run.loggers") -> tuple[str, ...]:
  """The writers named by `loggers` (comma-separated or a sequence; None: `DEFAULT_LOGGERS`),
  "jsonl" first and always included.

  Raises ValueError naming an unknown logger, `key` and the allowed names, and ImportError when
  "wandb" is named but the wandb package is not installed.
  """
  if loggers is None:
    loggers = DEFAULT_LOGGERS
  names = loggers.split(",") if isinstance(loggers, str) else list(loggers)
  names = [str(n).strip() for n in names if str(n).strip()]
  for name in names:
    if name not in LOGGERS:
      raise ValueError(f"unknown metric logger {name!r} in {key} (allowed: {', '.join(LOGGERS)})")
  if "wandb" in names and importlib.util.find_spec("wandb") is None:
    raise ImportError(_NO_WANDB.format(key=key))
  return tuple(n for n in LOGGERS if n == "jsonl" or n in names)


_NO_WANDB = ("{key} includes 'wandb' but the wandb package is not installed: "
             "pip install -e \".[wandb]\" (or leave 'wandb' out of {key})")


def prepare_run_dir(workdir: str | pathlib.Path, config=None) -> pathlib.Path:
  """Creates `workdir` and writes the resolved config to `config.json` (process 0 only)."""
  run_dir = pathlib.Path(workdir).absolute()
  run_dir.mkdir(parents=True, exist_ok=True)
  if config is not None and jax.process_index() == 0:
    atomic.write_text(run_dir / "config.json", config_lib.to_json(config))
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


class WandbWriter:
  """Logs scalars to a Weights & Biases run with the experiment config as the run's config.

  `settings` are `logger_config().wandb`'s fields. W&B's files go to `$WANDB_DIR` when set, else
  to `<run_dir>/wandb/`. The run's id is kept in `<run_dir>/wandb_run_id`, so a resumed training
  continues the same W&B run (W&B drops re-logged steps at or below its last one).
  """

  def __init__(self, run_dir: str | pathlib.Path, settings: Mapping[str, Any] | None = None,
               config: Mapping[str, Any] | None = None, key: str = "run.wandb"):
    try:
      import wandb  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise ImportError(_NO_WANDB.format(key=key.rsplit(".", 1)[0] + ".loggers")) from e
    settings = dict(settings or {})
    mode = settings.get("mode") or None
    if mode is not None and mode not in WANDB_MODES:
      raise ValueError(f"{key}.mode is {mode!r}; expected one of: '', {', '.join(WANDB_MODES)}")
    tags = settings.get("tags") or ()
    tags = [t.strip() for t in (tags.split(",") if isinstance(tags, str) else tags) if t.strip()]
    run_dir = pathlib.Path(run_dir)
    id_file = run_dir / WANDB_RUN_ID_FILE
    if id_file.exists():
      run_id = id_file.read_text().strip()
    else:
      run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
      atomic.write_text(id_file, run_id + "\n")
    if config is not None and hasattr(config, "to_dict"):
      config = config.to_dict()
    self.run = wandb.init(
        project=settings.get("project") or None, entity=settings.get("entity") or None,
        name=settings.get("name") or run_dir.name, group=settings.get("group") or None,
        tags=tags or None, mode=mode, dir=os.environ.get("WANDB_DIR") or str(run_dir),
        config=dict(config) if config else None, id=run_id, resume="allow")

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    self.run.log(dict(scalars), step=int(step))

  def close(self) -> None:
    self.run.finish()


class MetricWriter:
  """Writes scalar metrics to `run_dir/metrics.jsonl`, the other `loggers` and stdout.

  `loggers`: names from `LOGGERS` (comma-separated or a sequence, as in a config's `run.loggers`;
  None: `DEFAULT_LOGGERS`); JSONL is always written. `wandb`: the W&B settings
  (`logger_config().wandb`) and `config` the experiment config logged with the W&B run.
  `total_steps` enables the progress line (steps/s and ETA). Only process 0 writes unless
  `enabled` is set explicitly.
  """

  def __init__(self, run_dir: str | pathlib.Path, total_steps: int | None = None,
               enabled: bool | None = None, loggers: str | Sequence[str] | None = None,
               stream=sys.stdout, wandb: Mapping[str, Any] | None = None,
               config: Mapping[str, Any] | None = None):
    self.loggers = parse_loggers(loggers)
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.total_steps = total_steps
    self.stream = stream
    self._start_time = time.time()
    self._start_step: int | None = None
    self._jsonl = None
    self._tb = None
    self._wandb = None
    if self.enabled:
      run_dir = pathlib.Path(run_dir)
      run_dir.mkdir(parents=True, exist_ok=True)
      if "wandb" in self.loggers:   # first: nothing is left open when W&B fails to start
        self._wandb = WandbWriter(run_dir, wandb, config)
      self._jsonl = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
      if "tensorboard" in self.loggers:
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
    if self._wandb is not None:
      self._wandb.write(int(step), scalars)
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
    if self._wandb is not None:
      self._wandb.close()
      self._wandb = None


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
