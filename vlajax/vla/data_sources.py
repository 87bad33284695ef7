"""Training data sources for the VLA with a resumable position.

Both yield this host's rows of each global batch as a numpy model batch (``vlajax.vla.batch``
format) from ``next_local()``, and expose ``state()`` (JSON-serializable) and ``restore(state)``:

* ``SyntheticSource`` over ``vlajax.vla.synthetic.SyntheticVLADataset`` (position = batch index).
* ``RLDSSource`` over ``vlajax.data.loader.DataLoader`` (RLDS / Open X-Embodiment), converting its
  standardized batches with ``vlajax.vla.batch.from_standardized``.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Mapping

import jax

from vlajax.core import atomic
from vlajax.vla import batch as batch_lib
from vlajax.vla.config import Pi0Config
from vlajax.vla.synthetic import SyntheticVLADataset


class SyntheticSource:

  def __init__(self, dataset: SyntheticVLADataset, global_batch_size: int):
    if global_batch_size % jax.process_count():
      raise ValueError(f"batch_size {global_batch_size} is not divisible by {jax.process_count()} processes")
    self.dataset = dataset
    self.batch_size = global_batch_size
    self.position = 0

  def next_local(self) -> dict:
    batch = self.dataset.batch(self.position, self.batch_size, jax.process_index(), jax.process_count())
    self.position += 1
    return batch

  def state(self) -> dict:
    return {"position": self.position}

  def restore(self, state: Mapping[str, Any]) -> None:
    if "position" not in state:
      raise KeyError(f"synthetic data state lacks 'position' (has {sorted(state)})")
    self.position = int(state["position"])


class RLDSSource:
  """``vlajax.data`` batches converted for the VLA. ``data_cfg`` is the ``vlajax.data`` config."""

  def __init__(self, data_cfg, model_cfg: Pi0Config, tokenize: Callable, *, train: bool = True,
               stats_dir: str | None = None, state: Mapping[str, Any] | None = None,
               dataset_dirs: Mapping[str, str] | None = None):
    from vlajax.data.loader import DataLoader  # pylint: disable=import-outside-toplevel  (imports TF)
    if data_cfg.horizon != model_cfg.action_horizon:
      raise ValueError(f"data.rlds.horizon={data_cfg.horizon} differs from the model's action_horizon="
                       f"{model_cfg.action_horizon}")
    self._args = dict(train=train, stats_dir=stats_dir, dataset_dirs=dataset_dirs)
    self.data_cfg = data_cfg
    self.model_cfg = model_cfg
    self.tokenize = tokenize
    self.loader = DataLoader(data_cfg, None, state=state, **self._args)

  def next_local(self) -> dict:
    return batch_lib.from_standardized(self.loader.next_local(), self.model_cfg, self.tokenize)

  def state(self) -> dict:
    return self.loader.state()

  def metrics(self) -> dict[str, float]:
    """The loader's scalars for the training log (skipped corrupt records; `DataLoader.metrics`)."""
    return self.loader.metrics()

  def restore(self, state: Mapping[str, Any]) -> None:
    from vlajax.data.loader import DataLoader  # pylint: disable=import-outside-toplevel
    self.loader = DataLoader(self.data_cfg, None, state=state, **self._args)

  def normalization_info(self) -> dict:
    """What a deployed policy needs to map its actions / states to and from each dataset's units:
    the mode and, per robot dataset, the action / proprio statistics, the masks of the normalized
    dims and the native dims (``NORMALIZATION_FILE`` format)."""
    datasets = {}
    for name, stats in self.loader.stats.items():   # OXE registry or LeRobot datasets
      datasets[name] = {"action": stats["action"], "proprio": stats.get("proprio"),
                        **self.loader.normalization_spec(name)}
    return {"mode": self.data_cfg.normalization, "datasets": datasets}


# Written beside the checkpoints of an RLDS run (``<run_dir>/normalization.json``).
NORMALIZATION_FILE = "normalization.json"


def save_normalization(run_dir: str | pathlib.Path, info: Mapping[str, Any]) -> None:
  atomic.write_json(pathlib.Path(run_dir) / NORMALIZATION_FILE, info, indent=1, default=float)


def load_normalization(run_dir: str | pathlib.Path) -> dict | None:
  """The saved normalization info of a run, or None when the run has none (synthetic data)."""
  path = pathlib.Path(run_dir) / NORMALIZATION_FILE
  return json.loads(path.read_text()) if path.exists() else None
