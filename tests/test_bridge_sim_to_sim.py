"""Sim-to-sim: PPO policy served over the bridge, native-MuJoCo quadruped with perturbed physics.

The default test checks the plumbing end to end at 50 Hz with an untrained checkpoint. The `slow`
test needs a trained `quadruped_joystick` PPO run: it uses $VLAJAX_SIM2SIM_CHECKPOINT, or trains
the `cpu` preset of `experiments.ppo_locomotion` for 3000 iterations (15.4M env steps) first: about
2 h on 2 CPU cores. With such a run (BENCHMARKS.md, 2026-11-26): 0 falls, lin-vel MAE 0.05 m/s.
"""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from vlajax.eval import sim_to_sim
from vlajax.bridge.robots import PhysicsOverrides
from vlajax.eval import stats as eval_stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_untrained_checkpoint(run_dir):
  from experiments.configs import ppo_locomotion  # pylint: disable=import-outside-toplevel
  from vlajax import envs  # pylint: disable=import-outside-toplevel
  from vlajax.core.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel
  from vlajax.rl import ppo, running_stats  # pylint: disable=import-outside-toplevel

  config = ppo_locomotion.get_config("cpu")
  env = envs.make(config.env_name, config=config.env)
  sizes = env.observation_size
  params = ppo.Networks(config.ppo, env.action_size).init(jax.random.PRNGKey(0), sizes)
  checkpointer = Checkpointer(run_dir / "checkpoints", max_to_keep=1)
  checkpointer.save(1, {"params": params, "obs_stats": running_stats.init(sizes)}, {"config": config.to_dict()})
  checkpointer.wait()
  checkpointer.close()


def test_sim_to_sim_plumbing_at_50hz(tmp_path):
  _write_untrained_checkpoint(tmp_path)
  cfg = sim_to_sim.SimToSimConfig(checkpoint=str(tmp_path), commands=((0.5, 0.0, 0.0),),
                                  seconds_per_command=1.5, settle_seconds=0.2,
                                  overrides=PhysicsOverrides(friction_scale=0.5, kp_scale=0.65))
  result = sim_to_sim.run(cfg)
  bridge = result["bridge"]
  assert result["control_hz"] == pytest.approx(50.0)
  assert 0.85 < result["real_time_factor"] < 1.1
  assert abs(bridge["ticks"] - 50 * result["wall_seconds"]) <= 6  # the control loop kept its rate
  assert bridge["latency_ms_p50"] < 20.0  # one request per 20 ms period fits
  assert not bridge["stopped"]
  assert result["samples"] > 0 and result["lin_vel_mae"] >= 0.0
  assert result["overrides"]["friction_scale"] == 0.5


def test_sim_to_sim_episodes_report_falls_and_errors_with_intervals(tmp_path):
  _write_untrained_checkpoint(tmp_path)
  cfg = sim_to_sim.SimToSimConfig(checkpoint=str(tmp_path), commands=None, commands_per_episode=2,
                                  seconds_per_command=0.6, settle_seconds=0.2, seed=3)
  result = sim_to_sim.run_episodes(cfg, 3)
  episodes, summary = result["episodes"], result["summary"]
  assert [e["episode"] for e in episodes] == [0, 1, 2] and summary["episodes"] == 3
  # Seeded schedules from the env's command distribution: fixed per (seed, episode), different
  # across episodes, within the amplitudes.
  env = sim_to_sim._env(str(tmp_path))  # pylint: disable=protected-access
  assert episodes[1]["commands"] == [list(c) for c in sim_to_sim.episode_commands(env, cfg, 1)]
  assert episodes[0]["commands"] != episodes[1]["commands"]
  amp = np.asarray(env.config.command_config.amplitude)
  assert np.all(np.abs(np.asarray([e["commands"] for e in episodes])) <= amp)
  falls = summary["falls"]
  assert falls["falls"] == sum(e["fell"] for e in episodes) and falls["n"] == 3
  assert (falls["ci_low"], falls["ci_high"]) == tuple(eval_stats.wilson_interval(falls["falls"], 3))
  errors = summary["lin_vel_mae"]
  finite = [e["lin_vel_mae"] for e in episodes if np.isfinite(e["lin_vel_mae"])]
  assert errors["n"] == len(finite) and errors["mean"] == pytest.approx(np.mean(finite))
  assert errors["ci_low"] <= errors["mean"] <= errors["ci_high"]
  with pytest.raises(ValueError, match="num_episodes must be >= 1"):
    sim_to_sim.run_episodes(cfg, 0)
  # The in-process reference: the same executor and robot, the policy called without a socket.
  cfg.transport = "local"
  local = sim_to_sim.run_episodes(cfg, 1)["episodes"][0]
  assert local["commands"] == episodes[0]["commands"] and local["bridge"]["ticks"] > 0
  cfg.transport = "grpc"
  with pytest.raises(ValueError, match="transport 'grpc' unknown"):
    sim_to_sim.run_episodes(cfg, 1)


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
  path = os.environ.get("VLAJAX_SIM2SIM_CHECKPOINT")
  if path:
    return path
  workdir = tmp_path_factory.mktemp("ppo_quadruped")
  subprocess.run([sys.executable, "-m", "experiments.ppo_locomotion",
                  "--config=experiments/configs/ppo_locomotion.py:cpu", "--config.ppo.num_iterations=3000",
                  f"--config.workdir={workdir}"],
                 cwd=REPO, check=True)
  return str(workdir)


@pytest.mark.slow
def test_trained_policy_walks_perturbed_native_mujoco_robot(trained_checkpoint):
  """Physics outside the training DR ranges; the robot must not fall and must track the command."""
  cfg = sim_to_sim.SimToSimConfig(checkpoint=trained_checkpoint,
                                  commands=((0.5, 0.0, 0.0), (0.8, 0.0, 0.0), (0.0, 0.0, 0.6)),
                                  seconds_per_command=5.0)
  result = sim_to_sim.run(cfg)
  print(result)
  assert result["falls"] == 0
  assert not result["bridge"]["stopped"]
  assert result["bridge"]["hold_ticks"] <= 0.05 * result["bridge"]["ticks"]
  forward = result["per_command"][1]
  assert forward["mean_measured"][0] > 0.3  # it walks forward when told to (0.8 m/s)
  assert result["lin_vel_mae"] < 0.35
  assert result["yaw_rate_mae"] < 0.5


@pytest.mark.slow
def test_served_policy_matches_in_process_over_20_episodes(trained_checkpoint):
  """The same 20 seeded schedules through the websocket and in-process: the bridge's extra latency
  (~1-3 ms of a 20 ms period, one action per tick) must not change the outcome beyond noise."""
  results = {}
  for transport in ("websocket", "local"):
    cfg = sim_to_sim.SimToSimConfig(checkpoint=trained_checkpoint, commands=None,
                                    commands_per_episode=2, seconds_per_command=4.0,
                                    transport=transport)
    results[transport] = sim_to_sim.run_episodes(cfg, 20)["summary"]
  print(results)
  served, local = results["websocket"], results["local"]
  assert served["episodes"] == local["episodes"] == 20
  falls = eval_stats.fisher_exact_test(served["falls"]["falls"], 20, local["falls"]["falls"], 20)
  assert falls.p_value > 0.05
  assert abs(served["lin_vel_mae"]["mean"] - local["lin_vel_mae"]["mean"]) < 0.1
  assert served["hold_ticks"] <= 0.05 * served["ticks"]
