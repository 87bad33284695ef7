"""Cube tasks: `arm_push_cube` (push it into a goal region) and `arm_pick_cube` (lift it, then
place it in the goal region).

Each episode draws the cube's position (uniform in `cube_low` .. `cube_high`, m) and yaw (uniform in
+-`cube_yaw`, rad), and a goal on the table at a distance uniform in `goal_distance` from the cube
in a uniform direction, clipped to `goal_low` .. `goal_high`.

Success (per step):
  arm_push_cube  the cube's centre within `goal_radius` (5 cm) of the goal in the table plane and
                 the cube resting on the table (centre below `rest_height`, 3 cm).
  arm_pick_cube  the same, and the cube was lifted (centre above `lift_height`, 6 cm, at some step
                 of the episode: `info["lifted"]`), and released (fingers apart by more than the
                 cube).

Spaces (one env), besides the action (see `arm.py`):
  obs["state"]             f32[18 + A + 14]: proprioception, last action, then cube position (3),
                           (cos, sin) of 4 x cube yaw (2: a cube looks the same every 90 degrees),
                           goal (3), cube - tool point (3), goal - cube (2, in the plane), the
                           gripper's yaw relative to the cube's, wrapped to +-45 degrees (1),
                           `lifted` (1; always 0 for pushing)
  obs["privileged_state"]  the same, then cube position (3), cube velocity (6), goal (3)
Reward terms: `reach_cube` and `cube_to_goal` (1 - tanh(distance / 0.1) each), for picking also
`lift` (cube height above the table / 0.1, clipped to [0, 1]) and `cube_to_goal` counted only once
lifted; `success`; `action_rate` |a - a_prev|^2.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from mujoco import mjx

from vlajax.envs.manipulation import arm


def wrap_quarter_turn(angle: jax.Array) -> jax.Array:
  """`angle` (rad) wrapped to [-pi/4, pi/4): the nearest alignment with a cube's faces."""
  return jnp.mod(angle + jnp.pi / 4, jnp.pi / 2) - jnp.pi / 4


class CubeTask(arm.ArmEnv):
  """Shared sampling, observations and predicates of the cube tasks."""

  PICK = False

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = arm.arm_config()
    config.episode_length = 250
    config.cube_low = (0.45, -0.15)
    config.cube_high = (0.6, 0.15)
    config.cube_yaw = 0.5
    config.goal_distance = (0.1, 0.2)
    config.goal_low = (0.35, -0.3)
    config.goal_high = (0.7, 0.3)
    config.goal_radius = 0.05
    config.rest_height = 0.03
    config.lift_height = 0.06
    config.reward_scales = {"reach_cube": 0.5, "cube_to_goal": 1.0, "success": 1.0,
                            "action_rate": -0.01}
    return config

  def sample_task(self, rng):
    cfg = self.config
    k_xy, k_yaw, k_dist, k_dir = jax.random.split(rng, 4)
    xy = jax.random.uniform(k_xy, (2,), minval=jnp.asarray(cfg.cube_low),
                            maxval=jnp.asarray(cfg.cube_high))
    yaw = jax.random.uniform(k_yaw, (), minval=-cfg.cube_yaw, maxval=cfg.cube_yaw)
    distance = jax.random.uniform(k_dist, (), minval=cfg.goal_distance[0],
                                  maxval=cfg.goal_distance[1])
    heading = jax.random.uniform(k_dir, (), minval=-jnp.pi, maxval=jnp.pi)
    goal_xy = xy + distance * jnp.array([jnp.cos(heading), jnp.sin(heading)])
    goal_xy = jnp.clip(goal_xy, jnp.asarray(cfg.goal_low), jnp.asarray(cfg.goal_high))
    goal = jnp.concatenate([goal_xy, jnp.zeros(1)])
    return arm.cube_pose(xy, yaw)[None], goal, {"lifted": jnp.zeros((), bool)}

  # -- predicates -------------------------------------------------------------------------------

  def goal_distance(self, data: mjx.Data, info: dict) -> jax.Array:
    """f32[]: cube centre to goal in the table plane (m)."""
    return jnp.linalg.norm(self.cube_pos(data)[:2] - info["target"][:2])

  def in_goal(self, data: mjx.Data, info: dict) -> jax.Array:
    """bool[]: the cube rests on the table inside the goal region."""
    return ((self.goal_distance(data, info) < self.config.goal_radius)
            & (self.cube_pos(data)[2] < self.config.rest_height))

  def released(self, data: mjx.Data, info: dict | None = None) -> jax.Array:
    """bool[]: the fingers are apart by more than the cube's width (its DR size, with `info`)."""
    change = 0.0 if info is None else self.half_size_change(info, 0)
    return self.gripper_opening(data) > 2 * arm.CUBE_HALF + 0.005 + 2 * change

  def update_task_info(self, data, info):
    if self.PICK:
      info["lifted"] = info["lifted"] | (self.cube_pos(data)[2] > self.config.lift_height)
    return info

  def success(self, data, info):
    if self.PICK:
      return self.in_goal(data, info) & info["lifted"] & self.released(data, info)
    return self.in_goal(data, info)

  # -- reward and observation -------------------------------------------------------------------

  def reward_terms(self, data, info, action):
    reach = jnp.linalg.norm(self.cube_pos(data) - self.grip_pos(data))
    to_goal = 1.0 - jnp.tanh(self.goal_distance(data, info) / 0.1)
    terms = {"reach_cube": 1.0 - jnp.tanh(reach / 0.1),
             "cube_to_goal": to_goal * info["lifted"] if self.PICK else to_goal,
             "success": self.success(data, info).astype(jnp.float32),
             "action_rate": jnp.sum(jnp.square(action - info["last_action"]))}
    if self.PICK:
      terms["lift"] = jnp.clip((self.cube_pos(data)[2] - arm.CUBE_HALF) / 0.1, 0.0, 1.0)
    return terms

  def task_obs(self, data, info):
    cube, goal = self.cube_pos(data), info["target"]
    yaw = self.cube_yaw(data)
    return jnp.concatenate([
        cube, jnp.array([jnp.cos(4 * yaw), jnp.sin(4 * yaw)]), goal, cube - self.grip_pos(data),
        goal[:2] - cube[:2], wrap_quarter_turn(self.grip_yaw(data) - yaw)[None],
        info["lifted"].astype(jnp.float32)[None]])


class ArmPushCube(CubeTask):
  """Push the cube into the goal region (`arm_push_cube`)."""

  PROMPT = "push the cube onto the green disc"


class ArmPickCube(CubeTask):
  """Lift the cube, then place it in the goal region and let go (`arm_pick_cube`)."""

  PICK = True
  PROMPT = "pick up the cube and put it on the green disc"

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = super().default_config()
    config.episode_length = 300
    config.goal_distance = (0.15, 0.25)
    config.reward_scales = {"reach_cube": 0.5, "lift": 1.0, "cube_to_goal": 1.0, "success": 2.0,
                            "action_rate": -0.01}
    return config
