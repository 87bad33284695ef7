"""Closed-loop evaluation of a served policy through the deployment path: `PolicyClient` (or any
planner) + `ChunkExecutor` + `SafetyLayer` driving the native-MuJoCo twin of an arm task
(`bridge.robots.make_arm_robot`) in real time, from the same fixed seeded initial states as the
in-process evaluation (`closed_loop.initial_keys`), so the two are compared episode by episode.

  client = PolicyClient("127.0.0.1", port)
  episodes, bridge = evaluate_served(env, planner_from_client(client), seed=0, num_episodes=20)
  report.build(episodes, env_name="arm_reach")      # rates with Wilson intervals, as in-process

After one warm-up request, each episode starts the twin in `env.reset(key)` (arm, objects,
target, task variables), runs a fresh executor at the env's control rate for `episode_length`
control ticks, and samples the
env's success predicate on the robot twice per control period (success latched; time to success
is the executor's tick count at the first sample that saw it). What differs from the in-process
rollout, by design: MuJoCo's C physics on the nominal model (no DR; `overrides` for sim-to-sim
gaps), the wire (serialization, the server's queue) and the executor's timing (the observation a
chunk was planned from is one latency old; `ExecutionConfig`). Returns, lengths and env metrics
are not measured on the robot (NaN / the episode length / none).

Chunks (`ExecutionConfig.execute_k_of_h(H, K)`, the refill rule of `policies.execution`, which
the in-process `policies.chunking.replan_every_k` shares): the executor asks for the next chunk
once K actions of the current one ran, with H - K still queued (a runway of (H - K + 0.5) control
ticks), and when it arrives e ticks later drops its first e actions (their ticks passed) and lets
the rest replace the queue. While the latency stays under the runway no tick is held, a chunk
arrives every K ticks, and every executed action is its chunk's entry for that tick; K + e
actions of the previous chunk ran meanwhile, where the in-process rollout runs exactly K (e = 0:
zero latency, the same action sequence).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import numpy as np

from vlajax.bridge.executor import ChunkExecutor, ExecutorConfig, Planner
from vlajax.bridge.robots import PhysicsOverrides, make_arm_robot
from vlajax.bridge.safety import SafetyConfig, SafetyLayer
from vlajax.envs import rollout as rollout_lib
from vlajax.eval import closed_loop
from vlajax.policies import execution


@dataclasses.dataclass
class ExecutionConfig:
  """How the executor runs the served chunks (`bridge.executor.ExecutorConfig`'s fields).
  Default: replan after every action (an H = 1 state policy)."""
  chunk_length: int = 1
  refill_threshold: float = 1.0
  merge: str = "replace"
  stop_after_s: float = 0.5   # the watchdog: hold and stop when no chunk arrives for this long

  @classmethod
  def execute_k_of_h(cls, chunk_length: int, execute: int, **kwargs) -> "ExecutionConfig":
    """Execute `execute` (K) actions of each H-action chunk, then replace the rest with a new
    chunk: the refill threshold `policies.execution.refill_threshold(H, K)` (the one that
    `policies.chunking.replan_every_k` plans by)."""
    return cls(chunk_length=chunk_length,
               refill_threshold=execution.refill_threshold(chunk_length, execute), **kwargs)


def evaluate_served(env, planner: Planner, seed: int, num_episodes: int,
                    episode_length: int | None = None, *,
                    execution: ExecutionConfig | None = None,
                    overrides: PhysicsOverrides | None = None,
                    progress: Callable[[int, int], None] | None = None
                    ) -> tuple[rollout_lib.Episodes, dict]:
  """`planner` (observation dict -> action chunk [H, A]) on the twin of the arm task `env` from
  every state of the set `(seed, num_episodes)`. Returns the numpy `Episodes` in set order and the
  bridge's timing over all episodes (latency p50 / p99 / max ms, jitter, hold and missed ticks,
  watchdog stops, chunks received)."""
  execution = execution or ExecutionConfig()
  length = int(episode_length or env.config.episode_length)
  keys = closed_loop.initial_keys(seed, num_episodes)
  reset = jax.jit(env.reset)
  robot = make_arm_robot(env, overrides=overrides)
  hz = robot.control_hz
  size = env.action_size
  success = np.zeros(num_episodes, bool)
  time_to_success = np.full(num_episodes, -1, np.int32)
  instruction = np.full(num_episodes, -1, np.int32)
  latencies, jitters, holds, missed, stops, chunks = [], [], 0, 0, 0, 0
  try:
    robot.set_task(reset(keys[0]))
    planner(robot.get_observation())   # a warm-up round trip (the policy's and server's compiles)
    for i in range(num_episodes):
      state = reset(keys[i])
      if "instruction" in state.info:
        instruction[i] = int(state.info["instruction"])
      robot.set_task(state)
      layer = SafetyLayer(SafetyConfig(dt=1.0 / hz, joint_lower=-np.ones(size),
                                       joint_upper=np.ones(size), joint_margin=0.0),
                          initial_command=np.zeros(size))
      executor = ChunkExecutor(robot, planner, ExecutorConfig(
          control_hz=hz, chunk_length=execution.chunk_length,
          refill_threshold=execution.refill_threshold, merge=execution.merge,
          stop_after_s=execution.stop_after_s), safety=layer, record=False)
      try:
        executor.start()
        while executor.tick < length and not executor.stopped:
          if time_to_success[i] < 0 and robot.success():
            time_to_success[i] = executor.tick
          time.sleep(0.5 / hz)
      finally:
        executor.halt()
      success[i] = time_to_success[i] >= 0
      latencies.extend(executor.latencies_s)
      jitters.extend(executor.jitter_s)
      stats = executor.stats()
      holds += stats["hold_ticks"]
      missed += stats["missed_ticks"]
      stops += bool(stats["stopped"])
      chunks += stats["chunks"]
      if progress is not None:
        progress(i + 1, num_episodes)
  finally:
    robot.close()
  latency = np.asarray(latencies or [np.nan]) * 1e3
  jitter = np.abs(np.asarray(jitters or [np.nan])) * 1e3
  bridge = {"latency_ms_p50": float(np.median(latency)),
            "latency_ms_p99": float(np.percentile(latency, 99)),
            "latency_ms_max": float(np.max(latency)),
            "jitter_ms_p50": float(np.median(jitter)),
            "jitter_ms_p99": float(np.percentile(jitter, 99)),
            "hold_ticks": int(holds), "missed_ticks": int(missed), "watchdog_stops": int(stops),
            "chunks": int(chunks),
            "control_hz": float(hz)}
  episodes = rollout_lib.Episodes(
      success=success, episode_return=np.full(num_episodes, np.nan, np.float32),
      length=np.full(num_episodes, length, np.int32), time_to_success=time_to_success,
      metrics={}, instruction=instruction)
  return episodes, bridge
