"""Asynchronous action-chunk executor (seed 001 section 23b; seed 003 "Optimized Inference").

Two threads share an action queue indexed by control tick:

* the **control thread** runs at ``control_hz``: each tick it pops the action for that tick, passes it
  through the safety layer and sends it to the robot. If the queue is empty it holds the last safe
  action; the watchdog stops the robot when no fresh action has arrived for ``stop_after_s``.
* the **planner thread** is woken when the queue fill ``len(queue) / H`` falls below the refill
  threshold ``g``: it reads the latest observation (stamped with the next tick index ``s``), calls the
  planner (a local policy or a `PolicyClient`) and, when the chunk ``a[0:H]`` for ticks ``s .. s+H-1``
  arrives at tick ``T``, drops the ``T - s`` actions whose ticks already passed and merges the rest
  with the queue: ``"ensemble"`` (temporal ensembling, weight ``exp(-alpha * k)`` for the k-th
  prediction of a tick, ACT's convention favouring older predictions, or ``favor="new"``),
  ``"crossfade"`` (linear blend over the first ``crossfade_steps`` overlapping ticks) or ``"replace"``.

The queue's maths (the merge rules, popping, when to plan, execute K of H ->
``refill_threshold = vlajax.policies.execution.refill_threshold(H, K)``) is
`vlajax.policies.execution`'s, shared with closed-loop evaluation (`policies.chunking`): with zero
latency the executor executes the same actions as the in-process rollout.

The planner's latency ``l`` is measured on every call; the queue-safety condition
``g * H * dt > l`` is checked and a warning logged (and counted) when it fails.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from typing import Callable

import numpy as np

from vlajax.bridge.robots.base import Robot
from vlajax.policies import execution

log = logging.getLogger(__name__)

Planner = Callable[[dict], np.ndarray]  # observation -> chunk float[H, D]


@dataclasses.dataclass
class ExecutorConfig:
  control_hz: float = 50.0
  chunk_length: int = 16                # H
  refill_threshold: float = 0.5         # g: plan when len(queue) / H < g
  merge: str = "ensemble"               # "ensemble" | "crossfade" | "replace"
  ensemble_alpha: float = 0.01
  ensemble_favor: str = "old"           # "old" (ACT) or "new"
  crossfade_steps: int = 4
  stop_after_s: float = 0.5             # watchdog: stop the robot after this long without fresh actions
  planner_timeout_s: float = 1.0        # inference timeout: logged; the robot holds meanwhile
  planner_retry_s: float = 0.05         # pause after a failed planner call
  first_chunk_timeout_s: float = 60.0

  @property
  def merge_rule(self) -> execution.MergeRule:
    return execution.MergeRule(self.merge, self.ensemble_alpha, self.ensemble_favor,
                               self.crossfade_steps)

  def needs_plan(self, queued: int) -> bool:
    """Whether the planner is asked for a chunk with `queued` actions pending."""
    return bool(execution.needs_plan(queued, self.chunk_length, self.refill_threshold))

  def validate(self) -> None:
    self.merge_rule.validate()
    if not 0.0 < self.refill_threshold <= 1.0:
      raise ValueError(f"refill_threshold must be in (0, 1], got {self.refill_threshold}")
    if self.chunk_length < 1 or self.control_hz <= 0:
      raise ValueError("chunk_length must be >= 1 and control_hz > 0")


class ActionQueue:
  """Pending actions for consecutive ticks ``start, start+1, ...``: a `policies.execution.Pending`
  buffer (numpy, float64) merged and popped by `policies.execution` with the config's rule."""

  def __init__(self, config: ExecutorConfig):
    self.config = config
    self.rule = config.merge_rule
    self._pending: execution.Pending | None = None   # allocated by the first merge

  def __len__(self) -> int:
    return 0 if self._pending is None else int(execution.length(self._pending))

  def pop(self) -> np.ndarray:
    if not len(self):
      raise IndexError("pop from an empty action queue")
    action, self._pending = execution.pop(self._pending)
    return action

  def clear(self) -> None:
    self._pending = None

  def merge(self, actions: np.ndarray) -> None:
    """Merges ``actions[k]`` (for the k-th pending tick) into the queue."""
    actions = np.asarray(actions, np.float64)
    self._reserve(max(self.config.chunk_length, len(actions)), actions.shape[-1])
    self._pending = execution.merge(self._pending, actions, self.rule)

  def _reserve(self, capacity: int, action_size: int) -> None:
    if self._pending is None or self._pending.total.shape[-1] != action_size:
      self._pending = execution.empty(capacity, action_size)
    elif self._pending.weight.shape[0] < capacity:
      grow = capacity - self._pending.weight.shape[0]
      self._pending = execution.Pending(*(np.concatenate([x, np.zeros((grow,) + x.shape[1:],
                                                                      x.dtype)])
                                          for x in self._pending))


@dataclasses.dataclass
class TickRecord:
  tick: int
  time: float          # seconds since start when the action was sent
  action: np.ndarray   # what was sent (after safety)
  source: str          # "queue" | "stale" (last action of a chunk whose ticks all passed) | "hold"


class ChunkExecutor:
  """Runs `planner` asynchronously and executes its chunks on `robot` at a fixed rate.

  Args:
    robot: the `Robot` to command.
    planner: observation -> chunk float[H, D] (e.g. ``lambda o: client.infer(o)["actions"]``).
    config: `ExecutorConfig`.
    safety: optional `vlajax.bridge.safety.SafetyLayer`; every command goes through it.
    action_transform: optional ``(action, robot) -> command`` applied before safety (e.g. EE delta
      -> joint target through `Kinematics.ee_delta_to_joint_target`).
    record: keep a `TickRecord` per executed tick (tests, benchmarks).
  """

  def __init__(self, robot: Robot, planner: Planner, config: ExecutorConfig, *, safety=None,
               action_transform: Callable | None = None, record: bool = True):
    config.validate()
    self.robot = robot
    self.planner = planner
    self.config = config
    self.safety = safety
    self.action_transform = action_transform
    self.record = record
    self.dt = 1.0 / config.control_hz
    self.queue = ActionQueue(config)
    self._lock = threading.Lock()
    self._plan_request = threading.Event()
    self._running = False
    self._threads: list[threading.Thread] = []
    self.tick = 0                        # index of the next control tick
    self._start_time = 0.0
    self._last_fresh = 0.0
    self._last_action: np.ndarray | None = None
    self._planning = False
    self._plan_started_at = 0.0
    self._timeout_reported = False
    self.stopped = False
    self.stop_reason = ""
    # measurements
    # measurements keep the most recent `history` entries (bounded memory on long runs)
    history = 100_000
    self.records: collections.deque = collections.deque(maxlen=history)      # TickRecord
    self.latencies_s: collections.deque = collections.deque(maxlen=history)
    self.skipped_steps: collections.deque = collections.deque(maxlen=history)  # dropped per chunk
    self.chunk_arrivals: collections.deque = collections.deque(maxlen=history)  # (stamped s, arrival T)
    self.chunks_received = 0
    self.latency_warnings = 0
    self.planner_failures = 0
    self.stale_chunks = 0
    self._stale_ticks: set[int] = set()  # ticks filled from a fully elapsed chunk
    self.missed_ticks = 0
    self.hold_ticks = 0
    self.jitter_s: collections.deque = collections.deque(maxlen=history)

  # --- public API --------------------------------------------------------------------------------

  @property
  def safety_margin_s(self) -> float:
    """Runway when a refill is requested: g * H * dt (the queue-safety condition's left side)."""
    c = self.config
    return c.refill_threshold * c.chunk_length * self.dt

  def start(self) -> "ChunkExecutor":
    """Plans the first chunk synchronously, then starts the control and planner threads."""
    obs = self.robot.get_observation()
    t0 = time.perf_counter()
    chunk = self._call_planner(obs)
    self._record_latency(time.perf_counter() - t0)
    with self._lock:
      self.queue.merge(chunk)
      self.chunks_received += 1
      self.chunk_arrivals.append((0, 0))
      self.skipped_steps.append(0)
    self._running = True
    self._start_time = self._last_fresh = time.perf_counter()
    self._threads = [threading.Thread(target=self._control_loop, name="control", daemon=True),
                     threading.Thread(target=self._planner_loop, name="planner", daemon=True)]
    for thread in self._threads:
      thread.start()
    return self

  def run_for(self, seconds: float) -> "ChunkExecutor":
    """Starts (if needed), executes for `seconds` of wall time (or until stopped), then halts."""
    if not self._running:
      self.start()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and not self.stopped:
      time.sleep(min(0.05, max(0.0, deadline - time.perf_counter())))
    self.halt()
    return self

  def halt(self) -> None:
    """Stops both threads (the robot keeps its last command)."""
    self._running = False
    self._plan_request.set()
    for thread in self._threads:
      if thread is not threading.current_thread():
        thread.join(timeout=5.0)

  def emergency_stop(self, reason: str = "emergency stop") -> None:
    """Stops the robot now, from any thread."""
    if self.safety is not None:
      self.safety.emergency_stop(reason)
    self._stop_robot(reason)

  def stats(self) -> dict:
    lat = np.asarray(self.latencies_s or [np.nan]) * 1e3
    jit = np.abs(np.asarray(self.jitter_s or [np.nan])) * 1e3
    return {
        "ticks": self.tick, "chunks": self.chunks_received,
        "latency_ms_p50": float(np.median(lat)), "latency_ms_p99": float(np.percentile(lat, 99)),
        "latency_ms_max": float(np.max(lat)),
        "jitter_ms_p50": float(np.median(jit)), "jitter_ms_p99": float(np.percentile(jit, 99)),
        "jitter_ms_max": float(np.max(jit)),
        "hold_ticks": self.hold_ticks, "missed_ticks": self.missed_ticks,
        "latency_warnings": self.latency_warnings, "planner_failures": self.planner_failures,
        "stale_chunks": self.stale_chunks, "safety_margin_ms": self.safety_margin_s * 1e3,
        "stopped": self.stopped, "stop_reason": self.stop_reason,
    }

  # --- control thread ----------------------------------------------------------------------------

  def _control_loop(self) -> None:
    cfg = self.config
    while self._running and not self.stopped:
      deadline = self._start_time + self.tick * self.dt
      delay = deadline - time.perf_counter()
      if delay > 0:
        time.sleep(delay)
      now = time.perf_counter()
      late_ticks = int((now - deadline) / self.dt)
      with self._lock:
        if late_ticks > 0:  # the process stalled: those ticks' actions are stale, drop them
          self.missed_ticks += late_ticks
          for _ in range(min(late_ticks, len(self.queue))):
            self.queue.pop()
          self.tick += late_ticks
          deadline += late_ticks * self.dt
        fresh = len(self.queue) > 0
        action = self.queue.pop() if fresh else None
        tick = self.tick
        if self.safety is not None and self.safety.stopped:
          self._stop_robot(self.safety.stop_reason or "safety stop")
          return
        if fresh:
          self._last_fresh = now
        elif now - self._last_fresh > cfg.stop_after_s:
          self._stop_robot(f"watchdog: no fresh action for {now - self._last_fresh:.3f}s")
          return
        try:
          command = self._command(action)
          if command is not None:
            self.robot.send_action(command)
        except Exception as err:  # pylint: disable=broad-except
          log.exception("control tick %d failed", tick)
          self._stop_robot(f"control error at tick {tick}: {err}")
          return
        if command is not None:
          self._last_action = command
          if self.record:
            source = ("stale" if tick in self._stale_ticks else "queue") if fresh else "hold"
            self.records.append(TickRecord(tick, now - self._start_time, command, source))
        self._stale_ticks.discard(tick)
        self.jitter_s.append(now - deadline)
        self.tick += 1
        if cfg.needs_plan(len(self.queue)) and not self._planning:
          self._planning = True
          self._plan_request.set()
        self._check_inference_timeout(now)

  def _command(self, action: np.ndarray | None) -> np.ndarray | None:
    if action is None:
      self.hold_ticks += 1
      if self.safety is not None:
        return self.safety.hold("queue empty (inference late)")
      return self._last_action
    if self.action_transform is not None:
      action = self.action_transform(action, self.robot)
    if self.safety is not None:
      return self.safety.filter(action, measured_q=self.robot.joint_positions(),
                                wrench=self.robot.wrench())
    return np.asarray(action, np.float32)

  def _check_inference_timeout(self, now: float) -> None:
    if (self._planning and not self._timeout_reported and self._plan_started_at
            and now - self._plan_started_at > self.config.planner_timeout_s):
      self._timeout_reported = True
      log.warning("inference timeout: planner busy for %.3fs; holding", now - self._plan_started_at)
      if self.safety is not None:
        self.safety.log_intervention("inference_timeout",
                                     f"planner busy {now - self._plan_started_at:.3f}s")

  def _stop_robot(self, reason: str) -> None:
    if self.stopped:
      return
    self.stopped = True
    self.stop_reason = reason
    log.warning("stopping robot: %s", reason)
    if self.safety is not None and "watchdog" in reason:
      self.safety.log_intervention("watchdog_stop", reason)
    self.robot.stop()

  # --- planner thread ----------------------------------------------------------------------------

  def _call_planner(self, obs: dict) -> np.ndarray:
    chunk = np.asarray(self.planner(obs), np.float32)
    if chunk.ndim == 1:
      chunk = chunk[None]
    if chunk.ndim != 2 or chunk.shape[0] != self.config.chunk_length:
      raise ValueError(f"planner returned a chunk of shape {chunk.shape}, "
                       f"expected ({self.config.chunk_length}, action_dim)")
    return chunk

  def _record_latency(self, latency: float) -> None:
    self.latencies_s.append(latency)
    if latency >= self.safety_margin_s:
      self.latency_warnings += 1
      if self.latency_warnings == 1 or self.latency_warnings % 50 == 0:
        c = self.config
        log.warning("queue-safety condition g*H*dt > latency fails: %.2f*%d*%.4fs = %.1f ms <= %.1f ms "
                    "(%d times); raise refill_threshold or chunk_length", c.refill_threshold,
                    c.chunk_length, self.dt, self.safety_margin_s * 1e3, latency * 1e3,
                    self.latency_warnings)

  def _planner_loop(self) -> None:
    while self._running:
      self._plan_request.wait(timeout=0.1)
      if not self._running or self.stopped:
        return
      if not self._plan_request.is_set():
        continue
      self._plan_request.clear()
      with self._lock:
        obs = self.robot.get_observation()
        stamped = self.tick
      self._plan_started_at = time.perf_counter()
      self._timeout_reported = False
      try:
        chunk = self._call_planner(obs)
      except Exception as err:  # pylint: disable=broad-except
        self.planner_failures += 1
        if self.planner_failures == 1 or self.planner_failures % 20 == 0:
          log.warning("planner failed (%d times): %s", self.planner_failures, err)
        time.sleep(self.config.planner_retry_s)
        self._plan_request.set()  # still needed: try again with a fresh observation
        continue
      self._record_latency(time.perf_counter() - self._plan_started_at)
      self._plan_started_at = 0.0
      with self._lock:
        self._merge_arrived(chunk, stamped)
        self._planning = False
        if self.config.needs_plan(len(self.queue)):
          self._planning = True
          self._plan_request.set()

  def _merge_arrived(self, chunk: np.ndarray, stamped: int) -> None:
    """Drops the ticks that passed during inference and merges the rest (lock held)."""
    elapsed = self.tick - stamped
    self.chunks_received += 1
    self.chunk_arrivals.append((stamped, self.tick))
    if elapsed >= len(chunk):
      self.stale_chunks += 1
      if len(self.queue) == 0:  # a one-tick-late command beats holding: keep the last action
        self.skipped_steps.append(len(chunk) - 1)
        self.queue.merge(chunk[-1:])
        self._stale_ticks.add(self.tick)
      else:
        self.skipped_steps.append(len(chunk))
      return
    self.skipped_steps.append(elapsed)
    self.queue.merge(chunk[elapsed:])


def planner_from_client(client, key: str = "actions") -> Planner:
  """Adapts a `PolicyClient` (or any object with ``infer(obs) -> dict``) to a planner."""
  return lambda observation: client.infer(observation)[key]
