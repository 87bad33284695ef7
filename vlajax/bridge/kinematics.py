"""Arm kinematics from an MJCF through native MuJoCo: FK, Jacobians, damped-least-squares IK.

`Kinematics` owns a private `MjData`, so it never disturbs a running simulation. Joint vectors
``q`` are ``float[n]`` over the arm's hinge/slide joints (in the given order); positions are world
frame metres, orientations rotation matrices ``float[3, 3]`` or rotation vectors ``float[3]``.

Differential IK (damped least squares): ``dq = J^T (J J^T + lambda^2 I)^{-1} e``, lambda shrinking
with the error, and the 6-D pose error ``e = [p* - p, log(R* R^T)]`` (position-only when no target orientation is given).
End-effector-delta actions (the usual VLA action space: ``[dx, dy, dz, drx, dry, drz]``) become
joint targets by `ee_delta_to_joint_target`.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

import mujoco
import numpy as np


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
  quat = np.zeros(4)
  mujoco.mju_axisAngle2Quat(quat, *_axis_angle(rotvec))
  mat = np.zeros(9)
  mujoco.mju_quat2Mat(mat, quat)
  return mat.reshape(3, 3)


def _axis_angle(rotvec: np.ndarray) -> tuple[np.ndarray, float]:
  angle = float(np.linalg.norm(rotvec))
  axis = np.asarray(rotvec, float) / angle if angle > 1e-12 else np.array([1.0, 0.0, 0.0])
  return axis, angle


def matrix_to_rotvec(mat: np.ndarray) -> np.ndarray:
  quat = np.zeros(4)
  mujoco.mju_mat2Quat(quat, np.asarray(mat, float).reshape(9))
  vel = np.zeros(3)
  mujoco.mju_quat2Vel(vel, quat, 1.0)
  return vel


def orientation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
  """Rotation vector (world frame) that turns `current` into `target`."""
  return matrix_to_rotvec(np.asarray(target) @ np.asarray(current).T)


@dataclasses.dataclass(frozen=True)
class LinkSphere:
  body: int
  local_center: np.ndarray  # (3,) in the body frame
  radius: float


class Kinematics:
  """FK / Jacobian / IK for the chain that moves site `ee_site`.

  Args:
    model: the MuJoCo model (e.g. `mujoco.MjModel.from_xml_path(path)`).
    ee_site: name of the end-effector site.
    joint_names: arm joints in command order; default: every 1-DoF joint in model order.
  """

  def __init__(self, model: mujoco.MjModel, ee_site: str = "ee",
               joint_names: Sequence[str] | None = None):
    self.model = model
    self.data = mujoco.MjData(model)
    self.site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, ee_site)
    if self.site_id < 0:
      raise KeyError(f"site '{ee_site}' not in the model")
    if joint_names is None:
      joint_names = [model.joint(j).name for j in range(model.njnt)
                     if int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))]
    self.joint_names = list(joint_names)
    ids = []
    for name in self.joint_names:
      jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
      if jid < 0:
        raise KeyError(f"joint '{name}' not in the model")
      ids.append(jid)
    self.qpos_adr = np.array([model.jnt_qposadr[j] for j in ids])
    self.dof_adr = np.array([model.jnt_dofadr[j] for j in ids])
    limited = np.array([model.jnt_limited[j] for j in ids], bool)
    ranges = np.array([model.jnt_range[j] for j in ids], float)
    self.lower = np.where(limited, ranges[:, 0], -np.inf)
    self.upper = np.where(limited, ranges[:, 1], np.inf)
    self.spheres = self._link_spheres()

  @property
  def n(self) -> int:
    return len(self.joint_names)

  def _set(self, q: np.ndarray) -> None:
    q = np.asarray(q, float)
    if q.shape != (self.n,):
      raise ValueError(f"joint vector has shape {q.shape}, expected ({self.n},)")
    self.data.qpos[self.qpos_adr] = q
    mujoco.mj_kinematics(self.model, self.data)
    mujoco.mj_comPos(self.model, self.data)

  def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q float[n] -> (position float[3], rotation matrix float[3, 3]) of the EE site."""
    self._set(q)
    return self.data.site_xpos[self.site_id].copy(), self.data.site_xmat[self.site_id].reshape(3, 3).copy()

  def jacobian(self, q: np.ndarray) -> np.ndarray:
    """q float[n] -> float[6, n]: rows 0-2 linear, 3-5 angular velocity of the EE site."""
    self._set(q)
    jacp = np.zeros((3, self.model.nv))
    jacr = np.zeros((3, self.model.nv))
    mujoco.mj_jacSite(self.model, self.data, jacp, jacr, self.site_id)
    return np.concatenate([jacp, jacr])[:, self.dof_adr]

  def dls_step(self, q: np.ndarray, target_pos: np.ndarray, target_rot: np.ndarray | None = None,
               damping: float = 0.05, max_step: float = 0.2) -> np.ndarray:
    """One damped-least-squares step toward the target; returns the new q (clipped to limits)."""
    pos, rot = self.fk(q)
    jac = self.jacobian(q)
    err = np.asarray(target_pos, float) - pos
    if target_rot is not None:
      err = np.concatenate([err, orientation_error(target_rot, rot)])
    else:
      jac = jac[:3]
    # Damping fades with the error (Levenberg-Marquardt style): robust far from the target and
    # near singularities, Gauss-Newton-fast close to it.
    lam = damping * min(1.0, float(np.linalg.norm(err)) / 0.05)
    dq = jac.T @ np.linalg.solve(jac @ jac.T + (lam**2 + 1e-12) * np.eye(len(err)), err)
    norm = np.max(np.abs(dq))
    if norm > max_step:
      dq *= max_step / norm
    return np.clip(q + dq, self.lower, self.upper)

  def solve_ik(self, q0: np.ndarray, target_pos: np.ndarray, target_rot: np.ndarray | None = None,
               *, iters: int = 200, tol: float = 1e-4, rot_tol: float = 1e-3,
               damping: float = 0.05) -> tuple[np.ndarray, bool]:
    """Iterates `dls_step` from q0; returns (q, converged) with position error < tol (metres)."""
    q = np.asarray(q0, float).copy()
    for _ in range(iters):
      pos, rot = self.fk(q)
      pos_ok = np.linalg.norm(target_pos - pos) < tol
      rot_ok = target_rot is None or np.linalg.norm(orientation_error(target_rot, rot)) < rot_tol
      if pos_ok and rot_ok:
        return q, True
      q = self.dls_step(q, target_pos, target_rot, damping)
    pos, rot = self.fk(q)
    pos_ok = np.linalg.norm(target_pos - pos) < tol
    rot_ok = target_rot is None or np.linalg.norm(orientation_error(target_rot, rot)) < rot_tol
    return q, bool(pos_ok and rot_ok)

  def ee_delta_to_joint_target(self, q: np.ndarray, delta: np.ndarray, *, iters: int = 10,
                               damping: float = 0.05) -> np.ndarray:
    """EE-delta action float[3] (dx,dy,dz) or float[6] (+ world rotation vector) -> joint target."""
    delta = np.asarray(delta, float)
    if delta.shape not in ((3,), (6,)):
      raise ValueError(f"EE delta must have shape (3,) or (6,), got {delta.shape}")
    pos, rot = self.fk(q)
    target_rot = rotvec_to_matrix(delta[3:]) @ rot if delta.shape == (6,) else None
    q_new, _ = self.solve_ik(q, pos + delta[:3], target_rot, iters=iters, damping=damping)
    return q_new

  # --- link spheres for the self-collision check ----------------------------------------------

  def _link_spheres(self) -> list[LinkSphere]:
    """Covers each capsule/cylinder/sphere geom of a moving body with spheres along its axis."""
    spheres = []
    for g in range(self.model.ngeom):
      body = self.model.geom_bodyid[g]
      if body == 0:
        continue
      gtype, size = int(self.model.geom_type[g]), self.model.geom_size[g]
      pos, mat = self.model.geom_pos[g], self.model.geom_quat[g]
      rot = np.zeros(9)
      mujoco.mju_quat2Mat(rot, mat)
      axis = rot.reshape(3, 3)[:, 2]
      if gtype in (int(mujoco.mjtGeom.mjGEOM_CAPSULE), int(mujoco.mjtGeom.mjGEOM_CYLINDER)):
        radius, half = float(size[0]), float(size[1])
        count = max(2, int(np.ceil(2 * half / radius)) + 1)
        for t in np.linspace(-half, half, count):
          spheres.append(LinkSphere(int(body), pos + t * axis, radius))
      elif gtype == int(mujoco.mjtGeom.mjGEOM_SPHERE):
        spheres.append(LinkSphere(int(body), pos.copy(), float(size[0])))
    return spheres

  def sphere_centers(self, q: np.ndarray) -> np.ndarray:
    """World-frame centres float[S, 3] of `self.spheres` at joint vector q."""
    self._set(q)
    xpos, xmat = self.data.xpos, self.data.xmat.reshape(-1, 3, 3)
    return np.stack([xpos[s.body] + xmat[s.body] @ s.local_center for s in self.spheres])

  def collision_pairs(self, min_body_gap: int = 2) -> np.ndarray:
    """Sphere index pairs float[P, 2] on bodies at least `min_body_gap` links apart in the tree."""
    parent = self.model.body_parentid

    def chain(b):
      out = [b]
      while b != 0:
        b = parent[b]
        out.append(b)
      return out

    pairs = []
    for i, j in itertools.combinations(range(len(self.spheres)), 2):
      bi, bj = self.spheres[i].body, self.spheres[j].body
      if bi == bj:
        continue
      ci, cj = chain(bi), chain(bj)
      common = next(b for b in ci if b in cj)
      if ci.index(common) + cj.index(common) >= min_body_gap:
        pairs.append((i, j))
    return np.array(pairs, int).reshape(-1, 2)

  def self_collision(self, q: np.ndarray, pairs: np.ndarray, margin: float = 0.0) -> list[tuple[int, int]]:
    """Body pairs whose link spheres overlap (closer than `margin`) at q; empty if collision-free."""
    if len(pairs) == 0:
      return []
    centers = self.sphere_centers(q)
    radii = np.array([s.radius for s in self.spheres])
    dist = np.linalg.norm(centers[pairs[:, 0]] - centers[pairs[:, 1]], axis=-1)
    hit = dist < radii[pairs[:, 0]] + radii[pairs[:, 1]] + margin
    bodies = {(self.spheres[i].body, self.spheres[j].body) for i, j in pairs[hit]}
    return sorted(bodies)


class EEDeltaController:
  """Turns a stream of EE-delta actions into joint targets, integrating on the commanded pose.

  Deltas are applied to the last *commanded* joint target (not the measured one), so tracking
  lag does not shrink the motion. Use as an executor ``action_transform``:
  ``ChunkExecutor(..., action_transform=EEDeltaController(kin, robot.joint_positions()))``.
  """

  def __init__(self, kinematics: Kinematics, q0: np.ndarray, iters: int = 10):
    self.kin = kinematics
    self.q = np.asarray(q0, float).copy()
    self.iters = iters

  def __call__(self, action: np.ndarray, robot=None) -> np.ndarray:
    del robot
    self.q = self.kin.ee_delta_to_joint_target(self.q, action, iters=self.iters)
    return self.q.astype(np.float32)
