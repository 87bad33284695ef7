"""Safety layer between the policy and the robot (seed 001 section 23, "what to check at runtime").

Every command ``q`` (joint position targets ``float[n]``, or any bounded command vector for robots
without an arm model) passes `SafetyLayer.filter`, which applies, in order:

1. **emergency stop / compliant stop latched** -> hold (nothing moves until `reset`);
2. **non-finite** command -> rejected, hold the last safe command;
3. **force/torque** above ``max_force`` / ``max_torque`` -> compliant stop (latched; the robot is told
   to hold its *measured* position, so it stops pushing);
4. **joint position limits** with a margin -> clip to ``[lower + margin, upper - margin]``;
5. **end-effector workspace box** -> the EE position is projected back onto the box and the joints
   re-solved by differential IK (needs `Kinematics`);
6. **maximum end-effector step** per tick -> the joint step is shortened;
7. **joint velocity and acceleration limits** -> the step from the last safe command is limited;
8. **self-collision** on link spheres -> rejected, hold the last safe command.

A final check re-verifies joint limits and the workspace on the command that leaves (steps 5-7 move
it), holding the last safe command if it fails. Inference timeouts and watchdog events are logged
here by the executor (`log_intervention`); `hold()` gives the command to repeat. Every intervention
is counted in ``counts`` and appended to ``log``. `emergency_stop` is thread-safe, and
`emergency_stop_all` stops every live safety layer from anywhere in the process.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
import weakref

import numpy as np

log = logging.getLogger(__name__)

_LIVE_LAYERS: "weakref.WeakSet[SafetyLayer]" = weakref.WeakSet()


def emergency_stop_all(reason: str = "emergency stop") -> int:
  """Latches an emergency stop on every `SafetyLayer` in the process; returns how many."""
  layers = list(_LIVE_LAYERS)
  for layer in layers:
    layer.emergency_stop(reason)
  return len(layers)


@dataclasses.dataclass
class SafetyConfig:
  """Limits. Arrays are per joint (``float[n]``) or scalars; None disables a check."""

  dt: float = 0.02                                  # control period (s)
  joint_lower: np.ndarray | None = None
  joint_upper: np.ndarray | None = None
  joint_margin: float = float(np.deg2rad(2.0))      # 2 degrees off the hard stops
  max_joint_velocity: np.ndarray | float | None = None       # rad/s
  max_joint_acceleration: np.ndarray | float | None = None   # rad/s^2
  workspace_lower: np.ndarray | None = None         # EE box (m), needs kinematics
  workspace_upper: np.ndarray | None = None
  max_ee_step: float | None = None                  # m per tick, needs kinematics
  max_force: float | None = None                    # N (norm of the wrist force)
  max_torque: float | None = None                   # N m
  self_collision: bool = False                      # link-sphere check, needs kinematics
  self_collision_margin: float = 0.0
  self_collision_min_body_gap: int = 3
  workspace_tolerance: float = 1e-3


@dataclasses.dataclass(frozen=True)
class Intervention:
  time: float
  kind: str
  detail: str


class SafetyLayer:
  """Filters commands; see the module docstring for the checks and their order.

  Args:
    config: `SafetyConfig`.
    kinematics: `vlajax.bridge.kinematics.Kinematics` for the workspace, EE-step and
      self-collision checks (optional otherwise).
    initial_command: the command the robot currently holds (e.g. its measured joint positions).
  """

  def __init__(self, config: SafetyConfig, kinematics=None, initial_command: np.ndarray | None = None):
    self.config = config
    self.kin = kinematics
    needs_kin = (config.workspace_lower is not None or config.max_ee_step is not None
                 or config.self_collision)
    if needs_kin and kinematics is None:
      raise ValueError("workspace / max_ee_step / self_collision checks need a Kinematics instance")
    self._pairs = kinematics.collision_pairs(config.self_collision_min_body_gap) if config.self_collision else None
    self._lock = threading.Lock()
    self.counts: collections.Counter = collections.Counter()
    self.log: collections.deque = collections.deque(maxlen=10_000)
    self.stopped = False
    self.stop_reason = ""
    self._last: np.ndarray | None = None
    self._velocity: np.ndarray | None = None
    if initial_command is not None:
      self.reset(initial_command)
    _LIVE_LAYERS.add(self)

  # --- state -------------------------------------------------------------------------------------

  def reset(self, command: np.ndarray) -> None:
    """Clears latched stops; `command` becomes the last safe command (at rest)."""
    with self._lock:
      self._last = np.asarray(command, np.float64).copy()
      self._velocity = np.zeros_like(self._last)
      self.stopped = False
      self.stop_reason = ""

  @property
  def last_safe(self) -> np.ndarray | None:
    return None if self._last is None else self._last.copy()

  def log_intervention(self, kind: str, detail: str = "") -> None:
    self.counts[kind] += 1
    self.log.append(Intervention(time.time(), kind, detail))
    level = logging.WARNING if self.counts[kind] == 1 else logging.DEBUG
    log.log(level, "safety intervention %s (#%d): %s", kind, self.counts[kind], detail)

  def emergency_stop(self, reason: str = "emergency stop") -> None:
    with self._lock:
      if not self.stopped:
        self.stopped, self.stop_reason = True, reason
        self.log_intervention("emergency_stop", reason)

  def hold(self, reason: str = "hold") -> np.ndarray | None:
    """The command to repeat when no fresh one is available (logged as ``hold``)."""
    self.log_intervention("hold", reason)
    return self.last_safe

  # --- the filter --------------------------------------------------------------------------------

  def filter(self, command: np.ndarray, *, measured_q: np.ndarray | None = None,
             wrench: np.ndarray | None = None) -> np.ndarray | None:
    """Returns the safe command for this tick (float32), or None if nothing safe is known yet."""
    cfg = self.config
    with self._lock:
      q = np.asarray(command, np.float64)
      if self._last is None:
        self._last = (np.asarray(measured_q, np.float64) if measured_q is not None
                      else np.clip(np.nan_to_num(q), *self._limits(q.shape)))
        self._velocity = np.zeros_like(self._last)
      if q.shape != self._last.shape:
        raise ValueError(f"command has shape {q.shape}, expected {self._last.shape}")
      if self.stopped:
        self.counts["stopped"] += 1
        return self._out(self._last)
      if not np.all(np.isfinite(q)):
        self.log_intervention("non_finite", f"command {np.array2string(q, precision=3)}")
        return self._out(self._last)
      if wrench is not None and self._over_force(np.asarray(wrench, np.float64)):
        hold_at = np.asarray(measured_q, np.float64) if measured_q is not None else self._last
        self._last = hold_at.copy()
        self._velocity = np.zeros_like(hold_at)
        return self._out(hold_at)
      q = self._clip_joints(q, "joint_limit")
      if cfg.workspace_lower is not None:
        q = self._project_workspace(q)
      if cfg.max_ee_step is not None:
        q = self._limit_ee_step(q)
      q = self._limit_rates(q)
      if cfg.self_collision:
        hits = self.kin.self_collision(q, self._pairs, cfg.self_collision_margin)
        if hits:
          self.log_intervention("self_collision", f"link bodies in contact: {hits}")
          return self._out(self._last)
      if not self._verify(q):
        return self._out(self._last)
      self._velocity = (q - self._last) / cfg.dt
      self._last = q
      return self._out(q)

  @staticmethod
  def _out(q: np.ndarray) -> np.ndarray:
    return np.asarray(q, np.float32).copy()

  def _limits(self, shape) -> tuple[np.ndarray, np.ndarray]:
    cfg = self.config
    lo = np.full(shape, -np.inf) if cfg.joint_lower is None else np.asarray(cfg.joint_lower, float) + cfg.joint_margin
    hi = np.full(shape, np.inf) if cfg.joint_upper is None else np.asarray(cfg.joint_upper, float) - cfg.joint_margin
    return lo, hi

  def _clip_joints(self, q: np.ndarray, kind: str) -> np.ndarray:
    lo, hi = self._limits(q.shape)
    clipped = np.clip(q, lo, hi)
    if np.any(clipped != q):
      joints = np.flatnonzero(clipped != q).tolist()
      self.log_intervention(kind, f"joints {joints} clipped to limits (margin {self.config.joint_margin:.4f})")
    return clipped

  def _over_force(self, wrench: np.ndarray) -> bool:
    cfg = self.config
    force, torque = np.linalg.norm(wrench[:3]), np.linalg.norm(wrench[3:6])
    over = ((cfg.max_force is not None and force > cfg.max_force)
            or (cfg.max_torque is not None and torque > cfg.max_torque))
    if over:
      self.stopped, self.stop_reason = True, f"force/torque {force:.1f} N / {torque:.2f} N m over threshold"
      self.log_intervention("force_torque_stop", self.stop_reason)
    return over

  def _in_box(self, pos: np.ndarray, tol: float = 0.0) -> bool:
    cfg = self.config
    return bool(np.all(pos >= np.asarray(cfg.workspace_lower) - tol)
                and np.all(pos <= np.asarray(cfg.workspace_upper) + tol))

  def _project_workspace(self, q: np.ndarray) -> np.ndarray:
    cfg = self.config
    pos, _ = self.kin.fk(q)
    if self._in_box(pos):
      return q
    target = np.clip(pos, cfg.workspace_lower, cfg.workspace_upper)
    solved, _ = self.kin.solve_ik(q, target, iters=50, tol=cfg.workspace_tolerance / 2)
    solved = self._clip_joints(solved, "joint_limit")
    self.log_intervention("workspace", f"EE {np.round(pos, 3).tolist()} projected to {np.round(target, 3).tolist()}")
    return solved

  def _limit_ee_step(self, q: np.ndarray) -> np.ndarray:
    limit = self.config.max_ee_step
    start, _ = self.kin.fk(self._last)
    step = np.linalg.norm(self.kin.fk(q)[0] - start)
    if step <= limit:
      return q
    lo, hi = 0.0, 1.0  # bisection on the joint-space step fraction
    for _ in range(20):
      mid = 0.5 * (lo + hi)
      if np.linalg.norm(self.kin.fk(self._last + mid * (q - self._last))[0] - start) <= limit:
        lo = mid
      else:
        hi = mid
    self.log_intervention("ee_step", f"EE step {step:.4f} m > {limit:.4f} m; scaled by {lo:.3f}")
    return self._last + lo * (q - self._last)

  def _limit_rates(self, q: np.ndarray) -> np.ndarray:
    cfg = self.config
    if cfg.max_joint_velocity is None and cfg.max_joint_acceleration is None:
      return q
    velocity = (q - self._last) / cfg.dt
    wanted = velocity.copy()
    if cfg.max_joint_acceleration is not None:
      amax = np.asarray(cfg.max_joint_acceleration, float) * cfg.dt
      velocity = np.clip(velocity, self._velocity - amax, self._velocity + amax)
      if np.any(velocity != wanted):
        self.log_intervention("joint_acceleration", f"joints {np.flatnonzero(velocity != wanted).tolist()}")
    if cfg.max_joint_velocity is not None:
      vmax = np.broadcast_to(np.asarray(cfg.max_joint_velocity, float), velocity.shape)
      ratio = np.max(np.abs(velocity) / vmax)
      if ratio > 1.0:  # uniform scaling keeps the direction of motion
        velocity = velocity / ratio
        self.log_intervention("joint_velocity", f"step {ratio:.2f}x over the velocity limit; scaled")
    return self._last + velocity * cfg.dt

  def _verify(self, q: np.ndarray) -> bool:
    lo, hi = self._limits(q.shape)
    if np.any(q < lo - 1e-9) or np.any(q > hi + 1e-9):
      self.log_intervention("rejected", "command outside joint limits after filtering")
      return False
    if self.config.workspace_lower is not None:
      pos, _ = self.kin.fk(q)
      if not self._in_box(pos, self.config.workspace_tolerance):
        self.log_intervention("rejected", f"EE {np.round(pos, 3).tolist()} outside the workspace")
        return False
    return True
