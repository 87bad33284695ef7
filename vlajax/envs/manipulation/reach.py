"""`arm_reach`: move the gripper's tool point to a random target in the workspace.

Success (per step): the tool point within `success_radius` (3 cm) of the target.

Spaces (one env), besides the action (see `arm.py`):
  obs["state"]             f32[18 + A + 6]: proprioception (`ArmEnv.proprioception`), last action,
                           target (3), target - tool point (3)
  obs["privileged_state"]  the same, then cube position (3), cube velocity (6), target (3)
Reward terms: `reach` 1 - tanh(distance / 0.1), `success`, `action_rate` |a - a_prev|^2.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from mujoco import mjx

from vlajax.envs.manipulation import arm


class ArmReach(arm.ArmEnv):
  """Reach a target point drawn uniformly in `target_low` .. `target_high` (m, world frame)."""

  PROMPT = "move the gripper to the green marker"

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = arm.arm_config()
    config.episode_length = 100
    config.target_low = (0.35, -0.25, 0.1)
    config.target_high = (0.65, 0.25, 0.4)
    config.success_radius = 0.03
    config.reward_scales = {"reach": 1.0, "success": 1.0, "action_rate": -0.01}
    return config

  def sample_task(self, rng):
    target = jax.random.uniform(rng, (3,), minval=jnp.asarray(self.config.target_low),
                                maxval=jnp.asarray(self.config.target_high))
    cube = arm.cube_pose(jnp.array([0.2, 0.45]), jnp.zeros(()))   # parked out of the way
    return cube[None], target, {}

  def distance(self, data: mjx.Data, info: dict) -> jax.Array:
    return jnp.linalg.norm(info["target"] - self.grip_pos(data))

  def success(self, data, info):
    return self.distance(data, info) < self.config.success_radius

  def reward_terms(self, data, info, action):
    return {"reach": 1.0 - jnp.tanh(self.distance(data, info) / 0.1),
            "success": self.success(data, info).astype(jnp.float32),
            "action_rate": jnp.sum(jnp.square(action - info["last_action"]))}

  def task_obs(self, data, info):
    return jnp.concatenate([info["target"], info["target"] - self.grip_pos(data)])
