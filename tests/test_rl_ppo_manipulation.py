"""PPO on the arm tasks from state, through the shared PPO main and the `ppo_manipulation` presets.

The learning claim (`arm_reach` to >= 95% closed-loop success, and the same policy succeeding on
the bridge's native-MuJoCo twin of the arm) is the slow test (~10 min on 2 cores):
  python -m pytest -m slow -n 0 tests/test_rl_ppo_manipulation.py
"""
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import eval_policy as eval_configs
from experiments.configs import ppo_manipulation as configs
from vlajax import envs
from vlajax.bridge.robots import make_arm_robot
from vlajax.core import mesh as mesh_lib
from vlajax.eval import closed_loop, job
from vlajax.rl import loop, ppo

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_arm_preset_trains_with_adr_and_reports_the_success_rate(tmp_path):
  """~300 s of CPU (a PPO-iteration and an evaluation compile of the arm), so slow, beside the
  `arm_reach` preset's learning test: `python -m pytest -m slow -n 0 tests/test_rl_ppo_manipulation.py`.
  The arm's ADR mechanism alone is in the default run (tests/test_envs_manipulation_dr.py)."""
  config = configs.get_config("smoke_arm")
  config.adr.enabled = True    # the arm's own ADR bounds and steps (from the env, via rl_base)
  env = envs.make(config.env_name, config=config.env)
  learner = ppo.Learner(env, config.ppo, mesh_lib.make_mesh({"data": -1}), adr_config=config.adr)
  state = loop.train(learner, config.run, tmp_path, config.ppo.num_iterations,
                     metadata={"config": config.to_dict()}, stream=None)
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in records if "eval/success_rate" in r]
  assert evals and 0.0 <= evals[-1]["eval/success_rate"] <= 1.0
  assert any("reward/reach" in r for r in records), sorted(records[-1])
  # ADR started from the nominal arm and moved by at most one step per iteration.
  trained = [r for r in records if "dr/object_mass_scale/high" in r]
  assert len(trained) == config.ppo.num_iterations, sorted(records[-1])
  step = config.adr.steps.object_mass_scale
  for i, record in enumerate(trained):
    assert 1.0 - (i + 1) * step - 1e-6 <= record["dr/object_mass_scale/low"] <= 1.0
    assert 1.0 <= record["dr/object_mass_scale/high"] <= 1.0 + (i + 1) * step + 1e-6
  assert int(state.adr.num_widened + state.adr.num_shrunk) <= config.ppo.num_iterations

  policy, info = ppo.load_policy(tmp_path)
  assert info["action_size"] == env.action_size == 8 and info["obs_key"] == "state"
  obs = env.reset(jax.random.PRNGKey(0)).obs
  action = np.asarray(policy(obs))
  assert action.shape == (8,) and np.all(np.abs(action) <= 1.0)


def test_unknown_preset_is_named():
  with pytest.raises(KeyError, match="unknown ppo_manipulation config 'arm_fly'.*arm_reach"):
    configs.get_config("arm_fly")


@pytest.mark.slow
def test_arm_reach_preset_reaches_95_percent_closed_loop(tmp_path):
  workdir = tmp_path / "run"
  command = [sys.executable, "-m", "experiments.ppo_locomotion",
             "--config=experiments/configs/ppo_manipulation.py:arm_reach",
             f"--config.workdir={workdir}"]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=1800)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

  config = eval_configs.get_config("ppo")
  config.policy.path = str(workdir)
  config.num_episodes = 100
  config.videos = 0
  config.out_dir = str(tmp_path / "eval")
  report = job.run(config)
  overall = report["overall"]
  assert overall["n"] == 100
  # 95 of 100 fixed seeded initial states (seed 0), the env's own DR on.
  assert overall["successes"] >= 95, overall

  # Served unchanged to the native-MuJoCo twin (C physics, nominal model) from 20 env episodes.
  policy, _ = ppo.load_policy(workdir)
  env = envs.make("arm_reach")
  robot = make_arm_robot(env, real_time=False)
  reset = jax.jit(env.reset)
  substeps = round(env.config.ctrl_dt / env.config.sim_dt)
  successes = 0
  for key in closed_loop.initial_keys(1, 20):
    obs, succeeded = robot.set_task(reset(key)), False
    for _ in range(env.config.episode_length):
      robot.send_action(np.asarray(policy(obs)))
      robot.step_physics(substeps)
      obs = robot.get_observation()
      succeeded = succeeded or robot.success()
    successes += succeeded
  assert successes >= 18, successes
