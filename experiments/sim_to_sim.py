"""Sim-to-sim: a PPO locomotion policy trained in MJX walks a native-MuJoCo robot through the bridge.

  python -m experiments.sim_to_sim --checkpoint=runs/ppo_cpu
  python -m experiments.sim_to_sim --checkpoint=runs/ppo_cpu --friction_scale=0.5 --kp_scale=0.65 \
      --server_port=8000   # use an already running `experiments.serve_policy` instead of an in-process one

The policy is served by `PolicyServer` (in-process, on a free port, unless `--server_port` is given),
the robot is `make_quadruped_robot` with physics perturbed away from training (defaults lie outside
the training DR ranges: floor friction 0.35 vs U(0.4, 1.0), link masses x1.15 vs U(0.9, 1.1), Kp
x0.65 vs U(0.7, 1.3), joint damping x1.4 vs U(0.7, 1.3)), and the async executor drives it at the env's
control rate (50 Hz) through a `PolicyClient` and a safety layer. A joystick schedule of velocity
commands is played; the body-frame velocity is sampled each control period and compared with the
command after a settling time. Prints one JSON line of results.
"""
from __future__ import annotations

import dataclasses
import json
import time

import ml_collections
import numpy as np
from absl import app, flags

from vlajax import envs
from vlajax.bridge import policies
from vlajax.bridge.client import PolicyClient
from vlajax.bridge.executor import ChunkExecutor, ExecutorConfig, planner_from_client
from vlajax.bridge.robots import PhysicsOverrides, make_quadruped_robot
from vlajax.bridge.robots.mujoco_robot import quadruped_proprioception
from vlajax.bridge.safety import SafetyConfig, SafetyLayer
from vlajax.bridge.server import PolicyServer
from vlajax.rl import ppo

DEFAULT_COMMANDS = ((0.5, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 0.8), (0.3, 0.3, 0.0), (0.0, 0.0, 0.0))


@dataclasses.dataclass
class SimToSimConfig:
    checkpoint: str
    commands: tuple = DEFAULT_COMMANDS     # (vx, vy, yaw rate) each held for `seconds_per_command`
    seconds_per_command: float = 4.0
    settle_seconds: float = 1.0            # excluded from the error after each command change
    overrides: PhysicsOverrides = dataclasses.field(default_factory=lambda: PhysicsOverrides(
        friction_scale=0.5, mass_scale=1.15, kp_scale=0.65, damping_scale=1.4))
    noise_level: float = 1.0               # env-style observation noise on the robot
    server_host: str = "127.0.0.1"
    server_port: int = 0                   # 0: serve in-process on a free port
    min_height: float = 0.12               # trunk below this (or flipped) counts as a fall


def run(cfg: SimToSimConfig) -> dict:
    """Runs the schedule; returns tracking errors, falls and bridge timing statistics."""
    run_config = ppo.load_policy(cfg.checkpoint)[1]["config"]  # the env the policy was trained in
    env = envs.make(run_config["env_name"], config=ml_collections.ConfigDict(run_config["env"]))
    server, port = None, cfg.server_port
    if port == 0:
        server = PolicyServer(policies.load_policy("ppo", path=cfg.checkpoint), cfg.server_host, 0).start()
        port = server.port

    robot = make_quadruped_robot(env, overrides=cfg.overrides, noise_level=cfg.noise_level)
    client = PolicyClient(cfg.server_host, port, request_timeout=1.0)
    hz = robot.control_hz
    layer = SafetyLayer(SafetyConfig(dt=1.0 / hz, joint_lower=-np.ones(robot.model.nu),
                                     joint_upper=np.ones(robot.model.nu), joint_margin=0.0),
                        initial_command=np.zeros(robot.model.nu))
    executor = ChunkExecutor(robot, planner_from_client(client),
                             ExecutorConfig(control_hz=hz, chunk_length=1, refill_threshold=1.0,
                                            merge="replace", stop_after_s=0.5), safety=layer, record=False)
    robot.set_info("command", np.asarray(cfg.commands[0], np.float32))
    default_pose = robot.model.key_qpos[robot.model.key("home").id, 7:]
    samples, falls = [], 0
    try:
        executor.start()
        t0 = time.perf_counter()
        for index, command in enumerate(cfg.commands):
            robot.set_info("command", np.asarray(command, np.float32))
            segment_start = t0 + index * cfg.seconds_per_command
            next_sample = time.perf_counter()
            while time.perf_counter() < segment_start + cfg.seconds_per_command and not executor.stopped:
                parts, height = robot.inspect(
                    lambda m, d: (quadruped_proprioception(d, default_pose), float(d.qpos[2])))
                up_z = float(-parts["gravity"][2])
                if height < cfg.min_height or up_z < 0:
                    falls += 1
                    break
                if time.perf_counter() - segment_start >= cfg.settle_seconds:
                    samples.append((index, *command, parts["linvel"][0], parts["linvel"][1], parts["gyro"][2]))
                next_sample += 1.0 / hz
                time.sleep(max(0.0, next_sample - time.perf_counter()))
            if falls:
                break
        rtf = robot.real_time_factor()
        wall = time.perf_counter() - t0
    finally:
        executor.halt()
        robot.close()
        client.close()
        if server is not None:
            server.stop()
    result = _summarize(np.asarray(samples, np.float64).reshape(-1, 7), cfg, falls, executor, rtf, robot)
    result["wall_seconds"] = wall
    return result


def _summarize(samples: np.ndarray, cfg: SimToSimConfig, falls: int, executor, rtf: float, robot) -> dict:
    err = samples[:, 4:7] - samples[:, 1:4]  # measured - commanded (vx, vy, yaw rate)
    per_command = []
    for index, command in enumerate(cfg.commands):
        rows = samples[samples[:, 0] == index]
        if len(rows):
            e = rows[:, 4:7] - rows[:, 1:4]
            per_command.append({"command": list(command), "mean_measured": rows[:, 4:7].mean(0).round(3).tolist(),
                                "mae_xy": float(np.abs(e[:, :2]).mean()), "mae_yaw": float(np.abs(e[:, 2]).mean())})
    stats = executor.stats()
    return {
        "falls": falls,
        "samples": int(len(samples)),
        "lin_vel_mae": float(np.abs(err[:, :2]).mean()) if len(err) else float("nan"),
        "lin_vel_rmse": float(np.sqrt((err[:, :2] ** 2).sum(1).mean())) if len(err) else float("nan"),
        "yaw_rate_mae": float(np.abs(err[:, 2]).mean()) if len(err) else float("nan"),
        "per_command": per_command,
        "overrides": dataclasses.asdict(cfg.overrides),
        "real_time_factor": rtf,
        "physics_overruns": robot.overruns,
        "control_hz": robot.control_hz,
        "bridge": {k: stats[k] for k in ("ticks", "latency_ms_p50", "latency_ms_p99", "jitter_ms_p50",
                                         "jitter_ms_p99", "hold_ticks", "missed_ticks", "stopped", "stop_reason")},
    }


_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "PPO run directory (or its checkpoints/).")
_SECONDS = flags.DEFINE_float("seconds_per_command", 4.0, "Seconds each joystick command is held.")
_FRICTION = flags.DEFINE_float("friction_scale", 0.5, "Floor/foot friction x (training: floor 0.4-1.0).")
_MASS = flags.DEFINE_float("mass_scale", 1.15, "Link masses x (training: 0.9-1.1).")
_KP = flags.DEFINE_float("kp_scale", 0.65, "Actuator Kp x (training: 0.7-1.3).")
_DAMPING = flags.DEFINE_float("damping_scale", 1.4, "Joint damping x (training: 0.7-1.3).")
_DELAY = flags.DEFINE_float("action_delay_s", 0.0, "Extra actuation latency (s).")
_NOISE = flags.DEFINE_float("noise_level", 1.0, "Observation noise (1 = the env's training noise).")
_PORT = flags.DEFINE_integer("server_port", 0, "Use a running policy server on this port (0: in-process).")
_HOST = flags.DEFINE_string("server_host", "127.0.0.1", "Policy server host.")


def main(argv):
    del argv
    overrides = PhysicsOverrides(friction_scale=_FRICTION.value, mass_scale=_MASS.value, kp_scale=_KP.value,
                                 damping_scale=_DAMPING.value, action_delay_s=_DELAY.value)
    cfg = SimToSimConfig(checkpoint=_CHECKPOINT.value, seconds_per_command=_SECONDS.value,
                         overrides=overrides, noise_level=_NOISE.value, server_host=_HOST.value,
                         server_port=_PORT.value)
    print(json.dumps(run(cfg)))


if __name__ == "__main__":
    flags.mark_flag_as_required("checkpoint")
    app.run(main)
