"""The metric writers' `loggers` selection and the Weights & Biases writer, in W&B's offline mode
(nothing leaves the machine): what it records is read back from the offline run's transaction log.
"""
import json
import sys

import numpy as np
import pytest

from vlajax.core import config as config_lib
from vlajax.core import metrics

from wandb_testlib import offline_runs, read_offline_run


@pytest.fixture
def offline(tmp_path, monkeypatch):
  """W&B offline, its files under a temporary `$WANDB_DIR`."""
  wandb_dir = tmp_path / "wandb_dir"
  wandb_dir.mkdir()
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
  monkeypatch.setenv("WANDB_SILENT", "true")
  return wandb_dir


def test_wandb_writer_records_scalars_config_and_resumes_the_same_run(tmp_path, offline):
  run_dir = tmp_path / "run"
  settings = dict(metrics.logger_config().wandb, project="vlajax-test", tags="smoke, unit",
                  mode="offline")
  config = {"env_name": "cartpole", "ppo": {"learning_rate": 3e-4, "hidden": [16, 16]}}
  writer = metrics.MetricWriter(run_dir, loggers="jsonl,tensorboard,wandb", wandb=settings,
                                config=config, stream=None, enabled=True)
  assert writer.loggers == ("jsonl", "tensorboard", "wandb")
  written = {10: {"loss": 0.5, "eval/episode_return": 12.25}, 20: {"loss": 0.25, "env_steps": 20}}
  for step, scalars in written.items():
    # NaN ("no value yet") and non-scalars are not written anywhere
    writer.write(step, {**scalars, "episode/return": np.nan, "actions": np.zeros(3)})
  writer.close()

  (first,) = offline_runs(offline)
  run = read_offline_run(first)
  assert run["project"] == "vlajax-test" and run["name"] == "run" and run["tags"] == ["smoke", "unit"]
  assert run["config"]["env_name"] == "cartpole"
  assert run["config"]["ppo"] == {"learning_rate": 3e-4, "hidden": [16, 16]}
  assert sorted(run["history"]) == [10, 20]
  for step, scalars in written.items():
    recorded = {k: v for k, v in run["history"][step].items() if not k.startswith("_")}
    assert recorded == scalars
  lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
  assert [{k: v for k, v in line.items() if k not in ("step", "time")} for line in lines] == list(
      written.values())
  assert any((run_dir / "tensorboard").iterdir())

  # A resumed run (same run directory) continues the same W&B run.
  writer = metrics.MetricWriter(run_dir, loggers=("wandb",), wandb=settings, config=config,
                                stream=None, enabled=True)
  assert writer.loggers == ("jsonl", "wandb")   # JSONL is always written
  writer.write(30, {"loss": 0.125})
  writer.close()
  runs = offline_runs(offline)
  assert len(runs) == 2
  second = read_offline_run(runs[-1])
  assert second["id"] == run["id"] == (run_dir / metrics.WANDB_RUN_ID_FILE).read_text().strip()
  assert second["history"][30]["loss"] == 0.125


def test_unknown_logger_and_missing_wandb_are_clear_errors(tmp_path, monkeypatch):
  with pytest.raises(ValueError, match=r"unknown metric logger 'tensorbord' in run.loggers "
                                       r"\(allowed: jsonl, tensorboard, wandb\)"):
    metrics.MetricWriter(tmp_path, loggers="jsonl,tensorbord", enabled=True)
  assert not (tmp_path / "metrics.jsonl").exists()
  with pytest.raises(ValueError, match=r"run.wandb.mode is 'ofline'"):
    metrics.MetricWriter(tmp_path, loggers="wandb", wandb={"mode": "ofline"}, enabled=True)

  monkeypatch.setitem(sys.modules, "wandb", None)   # as if the package were not installed
  assert metrics.parse_loggers("jsonl,tensorboard") == ("jsonl", "tensorboard")
  with pytest.raises(ImportError, match=r"run.loggers includes 'wandb' but the wandb package is "
                                        r"not installed: pip install -e \"\.\[wandb\]\""):
    metrics.parse_loggers("jsonl,wandb")
  with pytest.raises(ImportError, match="wandb package is not installed"):
    metrics.MetricWriter(tmp_path, loggers="wandb", enabled=True)


@pytest.mark.parametrize("module", ["ppo_locomotion", "ppo_manipulation", "sac_control",
                                    "tdmpc_control", "train_policy", "train_vla"])
def test_every_training_config_selects_its_loggers_in_run(module):
  import importlib  # pylint: disable=import-outside-toplevel
  config = importlib.import_module(f"experiments.configs.{module}").get_config()
  assert config.run.loggers == metrics.DEFAULT_LOGGERS == "jsonl,tensorboard"
  assert set(config.run.wandb) == {"project", "entity", "name", "group", "tags", "mode"}
  changed = config_lib.apply_overrides(config, {"run.loggers": "jsonl,tensorboard,wandb",
                                                "run.wandb.mode": "offline"})
  assert metrics.parse_loggers(changed.run.loggers) == metrics.LOGGERS
  with pytest.raises(KeyError, match="run.wandb.projekt"):
    config_lib.apply_overrides(config, {"run.wandb.projekt": "x"})


def test_the_imitation_loop_takes_the_run_sections_loggers():
  from experiments.configs import train_policy  # pylint: disable=import-outside-toplevel
  from vlajax.imitation import loop  # pylint: disable=import-outside-toplevel
  config = train_policy.get_config("smoke")
  config.run.loggers = "jsonl,wandb"
  config.run.wandb.mode = "offline"
  loop_config = loop.LoopConfig.from_section(config.train, config.run)
  assert loop_config.loggers == "jsonl,wandb" and loop_config.wandb["mode"] == "offline"
  assert loop_config.steps == config.train.steps
  assert loop.LoopConfig.from_section(config.train).loggers is None   # no run section: defaults
  config.run.loggers = "jsonl,mlflow"
  with pytest.raises(ValueError, match="mlflow"):
    loop.LoopConfig.from_section(config.train, config.run)
