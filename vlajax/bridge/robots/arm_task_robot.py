"""The native-MuJoCo twin of an arm task (`vlajax.envs.manipulation`), so a policy trained in the
MJX env is served to the CPU robot unchanged.

  env = envs.make("arm_reach")
  robot = make_arm_robot(env)                 # the env's own `arm_7dof` scene, 50 Hz
  robot.set_task(env.reset(key))              # that episode's arm, objects, target, task state
  obs = robot.get_observation()               # {"state": f32[k]}: the env's obs["state"] (clean)
  robot.send_action(policy(obs))              # f32[A] in the env's action space
  robot.success()                             # the task's success predicate on the robot's state

The observation, the action mapping (joint deltas or end-effector deltas through the env's IK)
and the task's success predicate and latched task variables are the env's own functions, jitted
and applied to the robot's `MjData`, so they cannot drift from the training env. The `MjData`
reaches them as an `mjx.Data` carrying the fields those functions read (`MJX_FIELDS`: joint
state, site and body frames, the Jacobian's `cdof` / `subtree_com`; the rest zeros): 0.2 ms per
call where `mjx.put_data` of the whole state takes ~8 ms, too slow for a 50 Hz loop. The tests
check every task's functions against `mjx.put_data`. What differs is the physics: MuJoCo's C
solver in float64 on the nominal model (the env's DR off) plus any `PhysicsOverrides`, stepped in
real time at the env's `sim_dt`. Task variables (e.g. pick's `lifted`) latch, as in the env's
step, whenever the robot is observed or scored (`get_observation`, `success`).
"""
from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from vlajax.bridge.protocol import ArraySpec
from vlajax.bridge.robots.mujoco_robot import MujocoRobot, PhysicsOverrides

# The MjData fields the arm tasks' observation, action, task-update and success functions read.
MJX_FIELDS = ("qpos", "qvel", "xpos", "xmat", "site_xpos", "site_xmat", "subtree_com", "cdof")

# Keys of an env state's `info` that are bookkeeping of the MJX env, not task state.
_ENV_ONLY = ("rng", "step", "dr", "dr_ranges", "ctrl_history", "ctrl", "last_action", "steps",
             "truncation", "first_obs", "final_obs", "episode_success", "episode_done")


class ArmTaskRobot(MujocoRobot):
  """A `MujocoRobot` of an arm task env; see the module doc. `send_action` takes the env's action
  f32[A]; `get_observation` returns `{"state": f32[k]}` as the env's `obs["state"]`."""

  def __init__(self, env, *, overrides: PhysicsOverrides | None = None, real_time: bool = True,
               seed: int = 0):
    if not all(hasattr(env, name) for name in ("proprioception", "task_obs", "apply_action")):
      raise ValueError(f"{type(env).__name__} is not an arm task (vlajax.envs.manipulation); "
                       "make_arm_robot needs one, e.g. envs.make('arm_reach')")
    self.env = env
    model = copy.deepcopy(env.mj_model)
    model.opt.timestep = env.config.sim_dt
    template = mjx.make_data(env.mjx_model)
    self._to_mjx = jax.jit(lambda fields: template.replace(**fields))
    self._observe = jax.jit(lambda d, info: jnp.concatenate(
        [env.proprioception(d), info["last_action"], env.task_obs(d, info)]))
    self._apply = jax.jit(env.apply_action)
    self._update = jax.jit(env.update_task_info)
    self._success = jax.jit(env.success)
    shapes = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    # Until `set_task`: the task's variables are zeros of their shapes (target at the origin).
    self._task = {k: np.zeros(v.shape, v.dtype) for k, v in shapes.info.items()
                  if k not in _ENV_ONLY}
    size = shapes.obs["state"].shape
    super().__init__(model, observation_builder=self._build, action_adapter=self._adapt,
                     observation_spec={"state": ArraySpec(tuple(size), "float32")},
                     action_dim=env.action_size, control_hz=1.0 / env.config.ctrl_dt,
                     overrides=overrides, keyframe="home", real_time=real_time, seed=seed)
    # Compile the action mapping and the success predicate now, not in the first control tick.
    jax.block_until_ready((
        self._apply(self.mjx_data(), jnp.asarray(self.data.ctrl, jnp.float32),
                    jnp.zeros(env.action_size)),
        self._success(self.mjx_data(), self._task)))

  def set_task(self, state) -> dict:
    """Puts the robot in the env state `state` (one env, e.g. `env.reset(key)`): joint angles and
    velocities, objects, markers, actuator targets and the task's variables. Returns the
    observation."""
    with self._lock:
      data = jax.device_get(state.data)
      self.data.qpos[:] = data.qpos
      self.data.qvel[:] = data.qvel
      self.data.mocap_pos[:] = data.mocap_pos
      self.data.ctrl[:] = np.asarray(state.info["ctrl"])
      mujoco.mj_forward(self.model, self.data)
      self._pending.clear()
      self._stopped = False
      self._task = {k: np.asarray(v) for k, v in state.info.items() if k not in _ENV_ONLY}
      self._info["ctrl"] = np.asarray(state.info["ctrl"], np.float32)
      self._info.pop("last_action", None)
    return self.get_observation()

  def reset(self) -> dict:
    """The home pose with the current task variables: call `set_task` for an episode."""
    self._info.pop("ctrl", None)
    return super().reset()

  def success(self) -> bool:
    """The task's success predicate on the robot's current state."""
    with self._lock:
      d = self.mjx_data()
      self._task = jax.device_get(self._update(d, self._task))
      return bool(self._success(d, self._task))

  def task_info(self) -> dict:
    """The task's variables (target, latched flags, instruction, ...) as numpy arrays."""
    with self._lock:
      return dict(self._task)

  # -- the MujocoRobot hooks --------------------------------------------------------------------

  def mjx_data(self, full: bool = False) -> mjx.Data:
    """The robot's state as the `mjx.Data` the env's functions read (`MJX_FIELDS`; `full`: every
    field, through `mjx.put_data`)."""
    if full:
      return mjx.put_data(self.model, self.data)
    fields = {name: getattr(self.data, name) for name in MJX_FIELDS}
    fields["xmat"] = fields["xmat"].reshape(-1, 3, 3)
    fields["site_xmat"] = fields["site_xmat"].reshape(-1, 3, 3)
    return self._to_mjx(fields)

  def _build(self, model, data, info) -> dict:
    del model, data
    d = self.mjx_data()
    self._task = jax.device_get(self._update(d, self._task))
    last = info.get("last_action", np.zeros(self.env.action_size, np.float32))
    state = self._observe(d, {**self._task, "last_action": jnp.asarray(last, jnp.float32)})
    return {"state": np.asarray(state, np.float32)}

  def _adapt(self, model, data, action) -> np.ndarray:
    del model, data
    ctrl = self._info.get("ctrl")
    if ctrl is None:   # after `reset`: hold the current pose, gripper as commanded
      ctrl = self._hold_ctrl().astype(np.float32)
    ctrl = np.asarray(self._apply(self.mjx_data(), jnp.asarray(ctrl), jnp.asarray(action)))
    self._info["ctrl"] = ctrl
    return ctrl


def make_arm_robot(env, *, overrides: PhysicsOverrides | None = None, real_time: bool = True,
                   seed: int = 0) -> ArmTaskRobot:
  """The native-MuJoCo twin of the arm task `env` (`envs.make("arm_reach")`, ...; any action
  space); see the module doc."""
  return ArmTaskRobot(env, overrides=overrides, real_time=real_time, seed=seed)
