"""A short PPO run as a new user starts it: the console shows our progress and results, library
chatter (orbax's checkpoint INFO, MJX's Warp import probe) goes to `<workdir>/ppo_locomotion.log`,
and with `run.loggers` including wandb (offline) the W&B run records the metrics and the config.

The machine has Warp installed (the dev extra), so a `warp` package on PYTHONPATH that fails to
import stands in for a machine without it: MJX then prints "Failed to import warp: ..." on import.
"""
import json
import os
import pathlib
import re
import subprocess
import sys

from wandb_testlib import offline_runs, read_offline_run

REPO = pathlib.Path(__file__).resolve().parents[1]
ABSL_INFO = re.compile(r"^I\d{4} ", re.MULTILINE)   # absl's INFO prefix, e.g. "I1207 17:37:42.3"


def test_ppo_smoke_console_log_file_and_wandb_offline(tmp_path):
  no_warp = tmp_path / "no_warp" / "warp"
  no_warp.mkdir(parents=True)
  (no_warp / "__init__.py").write_text("raise ImportError('No module named warp (test stand-in)')\n")
  wandb_dir = tmp_path / "wandb_dir"
  wandb_dir.mkdir()
  workdir = tmp_path / "run"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(no_warp.parent), str(REPO)]),
             WANDB_MODE="offline", WANDB_DIR=str(wandb_dir), JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)   # one CPU device (cpu_devices=1): the cheapest compile
  command = [sys.executable, "-m", "experiments.ppo_locomotion",
             "--config=experiments/configs/ppo_locomotion.py:smoke", f"--config.workdir={workdir}",
             "--config.cpu_devices=1", "--config.ppo.num_iterations=2", "--config.ppo.num_envs=4",
             "--config.ppo.unroll_length=4", "--config.ppo.episode_length=10",
             "--config.ppo.num_epochs=1", "--config.run.num_eval_envs=2",
             "--config.run.checkpoint_every=1", "--config.run.loggers=jsonl,tensorboard,wandb",
             "--config.run.wandb.project=vlajax-test", "--config.run.wandb.tags=smoke,console"]
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  console = result.stdout + result.stderr
  assert result.returncode == 0, console[-4000:]

  # Our progress and results are on the console, library chatter is not.
  assert f"PPO on cartpole: 1 device(s), 16 env steps per iteration, run dir {workdir}" in console
  assert "[####################] 32/32" in console and "eval/episode_return=" in console
  assert "Failed to import" not in console
  assert not ABSL_INFO.search(console), ABSL_INFO.findall(console)
  assert "orbax" not in console.lower() and "checkpoint_manager" not in console

  # ... it is in the run's log file, at INFO.
  log = (workdir / "ppo_locomotion.log").read_text()
  assert "=== ppo_locomotion started:" in log
  assert "INFO vlajax.imports" in log and "Failed to import warp: No module named warp" in log
  assert re.search(r"INFO absl checkpoint_manager\.py:\d+\] .*Saving checkpoint at step 2", log)
  assert (workdir / "checkpoints" / "2").is_dir()

  # W&B (offline) recorded what metrics.jsonl holds, and the run config.
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [row["step"] for row in rows] == [16, 32]
  (offline_run,) = offline_runs(wandb_dir)
  run = read_offline_run(offline_run)
  assert run["project"] == "vlajax-test" and run["name"] == "run"
  assert run["tags"] == ["smoke", "console"]
  assert run["config"]["env_name"] == "cartpole" and run["config"]["ppo"]["num_envs"] == 4
  assert run["config"]["run"]["loggers"] == "jsonl,tensorboard,wandb"
  assert sorted(run["history"]) == [16, 32]
  for row in rows:
    recorded = run["history"][row["step"]]
    for key, value in row.items():
      if key not in ("step", "time"):
        assert recorded[key] == value, key
  assert "eval/episode_return" in run["history"][32]


PROBE = """
import sys
from absl import app, logging
from vlajax.core import logging_setup

def main(argv):
  path = logging_setup.setup(argv[1], job="probe")
  logging.info("library info line")
  logging.warning("a real warning")
  print("progress line", path, flush=True)

app.run(main)
"""


def test_absl_flags_move_the_log_and_restore_console_verbosity(tmp_path):
  def run(*flags):
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "run"), *flags], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr

  console = run()
  assert f"progress line {tmp_path / 'run' / 'probe.log'}" in console
  assert "a real warning" in console and "library info line" not in console
  log = (tmp_path / "run" / "probe.log").read_text()
  assert "INFO absl <string>" in log and "library info line" in log and "a real warning" in log

  console = run(f"--log_dir={tmp_path / 'elsewhere'}", "--verbosity=0")
  assert f"progress line {tmp_path / 'elsewhere' / 'probe.log'}" in console
  assert "library info line" in console and "a real warning" in console
  assert "library info line" in (tmp_path / "elsewhere" / "probe.log").read_text()
