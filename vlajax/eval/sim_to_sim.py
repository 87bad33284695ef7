"""Sim-to-sim evaluation: a PPO locomotion policy served over the bridge drives a native-MuJoCo
quadruped with physics outside the training DR, episode after episode, with intervals.

The policy is served by `PolicyServer` (in-process on a free port unless `server_port` is given);
each episode builds a fresh `make_quadruped_robot` (home pose, robot seed `seed + episode`), and
the async executor drives it at the env's control rate through a `PolicyClient` and a safety
layer. An episode plays a joystick schedule: `commands` if given, else `commands_per_episode`
commands drawn from the env's own command distribution (`command_config`: uniform in
+-amplitude, components zeroed with 1 - keep_prob) by `numpy.random.default_rng([seed, episode])`,
so a seed names a fixed set of schedules. The body-frame velocity is sampled every control period
and compared with the command after `settle_seconds` of each command; the trunk below
`min_height` or upside down is a fall and ends the episode.

`transport="local"` calls the same served policy in-process (same executor, safety layer and
robot; no socket): the in-process reference that the bridge is compared against.

`run_episodes` returns per-episode records and a summary: falls k/n with the Wilson 95% interval,
and the mean over episodes of the lin-vel and yaw-rate mean absolute errors with percentile
bootstrap 95% intervals (`scipy.stats.bootstrap`, episodes resampled; fallen episodes count with
the errors up to the fall). `run` is one episode with the result fields of the original check.
"""
from __future__ import annotations

import dataclasses
import time

import ml_collections
import numpy as np
import scipy.stats

from vlajax import envs
from vlajax.bridge import policies
from vlajax.bridge.client import PolicyClient
from vlajax.bridge.executor import ChunkExecutor, ExecutorConfig, planner_from_client
from vlajax.bridge.robots import PhysicsOverrides, make_quadruped_robot
from vlajax.bridge.robots.mujoco_robot import quadruped_proprioception
from vlajax.bridge.safety import SafetyConfig, SafetyLayer
from vlajax.bridge.server import PolicyServer
from vlajax.eval import stats
from vlajax.rl import ppo

TRANSPORTS = ("websocket", "local")
DEFAULT_COMMANDS = ((0.5, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 0.8), (0.3, 0.3, 0.0),
                    (0.0, 0.0, 0.0))


@dataclasses.dataclass
class SimToSimConfig:
  checkpoint: str
  commands: tuple | None = DEFAULT_COMMANDS  # (vx, vy, yaw rate) schedule; None: drawn per episode
  commands_per_episode: int = 2              # with commands=None
  seconds_per_command: float = 4.0
  settle_seconds: float = 1.0                # excluded from the error after each command change
  overrides: PhysicsOverrides = dataclasses.field(default_factory=lambda: PhysicsOverrides(
      friction_scale=0.5, mass_scale=1.15, kp_scale=0.65, damping_scale=1.4))
  noise_level: float = 1.0                   # env-style observation noise on the robot
  server_host: str = "127.0.0.1"
  server_port: int = 0                       # 0: serve in-process on a free port
  # "websocket": PolicyServer + PolicyClient; "local": the same served policy called in-process by
  # the executor (no socket, no serialization): the reference the bridge is compared with.
  transport: str = "websocket"
  min_height: float = 0.12                   # trunk below this (or flipped) counts as a fall
  seed: int = 0


def _env(checkpoint: str):
  run_config = ppo.load_policy(checkpoint)[1]["config"]   # the env the policy was trained in
  return envs.make(run_config["env_name"], config=ml_collections.ConfigDict(run_config["env"]))


def episode_commands(env, cfg: SimToSimConfig, episode: int) -> tuple:
  """The joystick schedule of `episode`: `cfg.commands`, or seeded draws from the env's own
  command distribution."""
  if cfg.commands is not None:
    return tuple(tuple(float(x) for x in c) for c in cfg.commands)
  rng = np.random.default_rng([cfg.seed, episode])
  amp = np.asarray(env.config.command_config.amplitude, np.float64)
  keep = np.asarray(env.config.command_config.keep_prob, np.float64)
  return tuple(tuple(float(x) for x in rng.uniform(-amp, amp) * (rng.uniform(size=3) < keep))
               for _ in range(cfg.commands_per_episode))


def _episode(env, cfg: SimToSimConfig, port: int, episode: int, served) -> dict:
  commands = episode_commands(env, cfg, episode)
  robot = make_quadruped_robot(env, overrides=cfg.overrides, noise_level=cfg.noise_level,
                               seed=cfg.seed + episode)
  client = (served if cfg.transport == "local"
            else PolicyClient(cfg.server_host, port, request_timeout=1.0))
  hz = robot.control_hz
  nu = robot.model.nu
  layer = SafetyLayer(SafetyConfig(dt=1.0 / hz, joint_lower=-np.ones(nu), joint_upper=np.ones(nu),
                                   joint_margin=0.0), initial_command=np.zeros(nu))
  executor = ChunkExecutor(robot, planner_from_client(client),
                           ExecutorConfig(control_hz=hz, chunk_length=1, refill_threshold=1.0,
                                          merge="replace", stop_after_s=0.5),
                           safety=layer, record=False)
  robot.set_info("command", np.asarray(commands[0], np.float32))
  default_pose = robot.model.key_qpos[robot.model.key("home").id, 7:]
  samples, fell = [], False
  try:
    executor.start()
    t0 = time.perf_counter()
    for index, command in enumerate(commands):
      robot.set_info("command", np.asarray(command, np.float32))
      segment_start = t0 + index * cfg.seconds_per_command
      next_sample = time.perf_counter()
      while (time.perf_counter() < segment_start + cfg.seconds_per_command
             and not executor.stopped):
        parts, height = robot.inspect(
            lambda m, d: (quadruped_proprioception(d, default_pose), float(d.qpos[2])))
        if height < cfg.min_height or -parts["gravity"][2] < 0:
          fell = True
          break
        if time.perf_counter() - segment_start >= cfg.settle_seconds:
          samples.append((index, *command, parts["linvel"][0], parts["linvel"][1],
                          parts["gyro"][2]))
        next_sample += 1.0 / hz
        time.sleep(max(0.0, next_sample - time.perf_counter()))
      if fell:
        break
    wall = time.perf_counter() - t0
    rtf = robot.real_time_factor()
  finally:
    executor.halt()
    robot.close()
    if cfg.transport != "local":
      client.close()
  result = _errors(np.asarray(samples, np.float64).reshape(-1, 7), commands)
  bridge = executor.stats()
  result.update(
      episode=episode, fell=fell, commands=[list(c) for c in commands], wall_seconds=wall,
      real_time_factor=rtf, physics_overruns=robot.overruns, control_hz=robot.control_hz,
      bridge={k: bridge[k] for k in ("ticks", "latency_ms_p50", "latency_ms_p99", "jitter_ms_p50",
                                     "jitter_ms_p99", "hold_ticks", "missed_ticks", "stopped",
                                     "stop_reason")})
  return result


def _errors(samples: np.ndarray, commands: tuple) -> dict:
  err = samples[:, 4:7] - samples[:, 1:4]       # measured - commanded (vx, vy, yaw rate)
  per_command = []
  for index, command in enumerate(commands):
    rows = samples[samples[:, 0] == index]
    if len(rows):
      e = rows[:, 4:7] - rows[:, 1:4]
      per_command.append({"command": list(command),
                          "mean_measured": rows[:, 4:7].mean(0).round(3).tolist(),
                          "mae_xy": float(np.abs(e[:, :2]).mean()),
                          "mae_yaw": float(np.abs(e[:, 2]).mean())})
  nan = float("nan")
  return {"samples": int(len(samples)),
          "lin_vel_mae": float(np.abs(err[:, :2]).mean()) if len(err) else nan,
          "lin_vel_rmse": float(np.sqrt((err[:, :2] ** 2).sum(1).mean())) if len(err) else nan,
          "yaw_rate_mae": float(np.abs(err[:, 2]).mean()) if len(err) else nan,
          "per_command": per_command}


def _mean_interval(values: np.ndarray, seed: int) -> dict:
  values = values[np.isfinite(values)]
  if len(values) == 0:
    return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
  if len(values) == 1 or np.all(values == values[0]):
    return {"mean": float(values[0]), "ci_low": float(values[0]), "ci_high": float(values[0]),
            "n": int(len(values))}
  ci = scipy.stats.bootstrap((values,), np.mean, confidence_level=0.95, method="percentile",
                             n_resamples=2000, random_state=np.random.default_rng(seed))
  return {"mean": float(values.mean()), "ci_low": float(ci.confidence_interval.low),
          "ci_high": float(ci.confidence_interval.high), "n": int(len(values))}


def summarize(episodes: list[dict], seed: int = 0) -> dict:
  """Falls k/n with the Wilson 95% interval; lin-vel / yaw-rate MAE means with bootstrap 95%
  intervals over episodes (see the module doc)."""
  falls = stats.success_summary(np.array([e["fell"] for e in episodes], bool))
  return {"episodes": len(episodes),
          "falls": {"n": falls["n"], "falls": falls["successes"], "rate": falls["rate"],
                    "ci_low": falls["ci_low"], "ci_high": falls["ci_high"]},
          "lin_vel_mae": _mean_interval(np.array([e["lin_vel_mae"] for e in episodes]), seed),
          "yaw_rate_mae": _mean_interval(np.array([e["yaw_rate_mae"] for e in episodes]), seed),
          "hold_ticks": int(sum(e["bridge"]["hold_ticks"] for e in episodes)),
          "ticks": int(sum(e["bridge"]["ticks"] for e in episodes)),
          "stopped": int(sum(bool(e["bridge"]["stopped"]) for e in episodes))}


def run_episodes(cfg: SimToSimConfig, num_episodes: int) -> dict:
  """`num_episodes` episodes (see the module doc): {"summary", "episodes", "overrides"}."""
  if num_episodes < 1:
    raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
  if cfg.transport not in TRANSPORTS:
    raise ValueError(f"transport '{cfg.transport}' unknown (use one of {TRANSPORTS})")
  env = _env(cfg.checkpoint)
  server, port, served = None, cfg.server_port, None
  if cfg.transport == "local" or port == 0:
    served = policies.load_policy("ppo", path=cfg.checkpoint)
  if cfg.transport == "websocket" and port == 0:
    server = PolicyServer(served, cfg.server_host, 0).start()
    port = server.port
  try:
    episodes = [_episode(env, cfg, port, i, served) for i in range(num_episodes)]
  finally:
    if server is not None:
      server.stop()
  return {"summary": summarize(episodes, cfg.seed), "episodes": episodes,
          "overrides": dataclasses.asdict(cfg.overrides)}


def run(cfg: SimToSimConfig) -> dict:
  """One episode of `cfg.commands`: its record with `falls` (0/1) and `overrides`."""
  result = run_episodes(cfg, 1)
  episode = result["episodes"][0]
  episode.update(falls=int(episode["fell"]), overrides=result["overrides"])
  return episode
