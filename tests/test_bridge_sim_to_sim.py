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
import pytest

from experiments import sim_to_sim
from vlajax.bridge.robots import PhysicsOverrides

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
