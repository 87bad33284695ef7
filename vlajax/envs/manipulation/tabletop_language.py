"""`tabletop_language`: four coloured cubes and two plates on the table; each episode one
instruction ("put the blue cube on the white plate") from `instructions.py`.

Each episode draws an instruction uniformly from `config.split` (restricted to `config.families`),
then places the four cubes and two plates in six of the nine cells of a 3 x 3 grid over the
workspace (x in `grid_x`, y in `grid_y`, m), shuffled, each jittered by up to `grid_jitter` and the
cubes turned by up to `cube_yaw` rad. The instruction id is `state.info["instruction"]`;
`instructions.text(id)` gives its words. The arm scene's target marker is invisible (the goal is
only in the words, and in the state vector for state policies).

Success (per step), for the instructed cube:
  pick   its centre above `lift_height` (8 cm: above a cube resting on another) and within 3 cm of
         the tool point (held, not thrown).
  place  resting on the table (centre below `rest_height`) within `plate_radius - 1 cm` of the
         named plate's centre, and the gripper open wider than a cube.
  push   resting on the table, moved at least `push_distance` (10 cm) from where it started along
         the named direction (robot frame: left +y, right -y, forward +x, back -x).

Spaces (one env), besides the action (see `arm.py`):
  obs["state"]             f32[18 + A + 50]: proprioception, last action, then the instruction's
                           encoding (13: one-hot family, cube, goal; `instructions.encoding_table`),
                           every cube's position (12) and (cos, sin) of 4 x its yaw (8), the plates'
                           centres (4: x, y each), the instructed cube's position (3), it minus the
                           tool point (3), the goal point `info["target"]` (3) and it minus the
                           cube (3, zero z for pick), `lifted` (1)
  obs["privileged_state"]  the same, then every cube's position (12) and velocity (24), target (3)
Reward terms: `reach_cube` 1 - tanh(d / 0.1) from the tool point to the instructed cube;
`cube_to_goal` 1 - tanh(d / 0.1) from the cube to the goal point in the plane (place, push) or the
lift progress (pick: height above the table / 0.1, clipped to [0, 1]); `success`; `action_rate`.

`info`: besides `arm.py`'s: `instruction`, `family`, `object`, `goal` (i32: ids of
`instructions.INSTRUCTIONS`, `FAMILIES`, `OBJECTS`, and the plate or direction index), `start`
f32[3] (the cube's initial position), `plates` f32[2, 3], `lifted` (the instructed cube was above
`lift_height` at some step).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from mujoco import mjx

from vlajax.envs.manipulation import arm
from vlajax.envs.manipulation import instructions as ins
from vlajax.envs.manipulation import scene

CARRY_HEIGHT = 0.12   # m, the pick family's goal point above the cube's start


class TabletopLanguage(arm.ArmEnv):
  """Language-conditioned pick / place / push among four cubes and two plates."""

  OBJECTS = scene.OBJECT_JOINTS

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = arm.arm_config()
    config.episode_length = 300
    config.split = "train"
    config.families = ins.FAMILIES
    config.grid_x = (0.4, 0.53, 0.66)
    config.grid_y = (-0.2, 0.0, 0.2)
    config.grid_jitter = 0.02
    config.cube_yaw = 0.5
    config.lift_height = 0.08
    config.rest_height = 0.03
    config.plate_radius = scene.PLATE_RADIUS
    config.push_distance = 0.1
    # Contact pairs: 4 cubes x (table, 2 pads, hand) + 6 cube pairs, box-box up to 8 contacts.
    config.naconmax_per_env = 120
    config.njmax = 512
    config.reward_scales = {"reach_cube": 0.5, "cube_to_goal": 1.0, "success": 2.0,
                            "action_rate": -0.01}
    return config

  @classmethod
  def build_model(cls, config):
    del config
    return scene.tabletop_model()

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.instruction_ids = ins.instruction_ids(config.split, tuple(config.families))
    table = ins.INSTRUCTIONS
    self._family = jnp.asarray([ins.FAMILIES.index(i.family) for i in table], jnp.int32)
    self._object = jnp.asarray([ins.OBJECTS.index(i.object) for i in table], jnp.int32)
    self._goal = jnp.asarray([ins.GOALS[i.family].index(i.goal) for i in table], jnp.int32)
    self._encoding = jnp.asarray(ins.encoding_table())
    self._directions = jnp.asarray(ins.DIRECTION_VECTORS)
    grid = np.stack(np.meshgrid(config.grid_x, config.grid_y, indexing="ij"), -1).reshape(-1, 2)
    self._grid = jnp.asarray(grid, jnp.float32)

  # -- the instruction --------------------------------------------------------------------------

  def family_is(self, info: dict, family: str) -> jax.Array:
    return info["family"] == ins.FAMILIES.index(family)

  def focus_object(self, info):
    return info["object"]

  def holds_object(self, info):
    return self.family_is(info, "pick")

  def sample_task(self, rng):
    cfg = self.config
    k_ins, k_cells, k_jitter, k_yaw = jax.random.split(rng, 4)
    instruction = jax.random.choice(k_ins, jnp.asarray(self.instruction_ids))
    n_cubes, n_plates = len(self.OBJECTS), len(scene.PLATE_BODIES)
    cells = jax.random.permutation(k_cells, self._grid.shape[0])[:n_cubes + n_plates]
    jitter = jax.random.uniform(k_jitter, (n_cubes + n_plates, 2), minval=-cfg.grid_jitter,
                                maxval=cfg.grid_jitter)
    xy = self._grid[cells] + jitter
    yaws = jax.random.uniform(k_yaw, (n_cubes,), minval=-cfg.cube_yaw, maxval=cfg.cube_yaw)
    cubes = jax.vmap(arm.cube_pose)(xy[:n_cubes], yaws)
    plates = jnp.concatenate([xy[n_cubes:], jnp.zeros((n_plates, 1))], axis=-1)
    family, obj, goal = self._family[instruction], self._object[instruction], self._goal[instruction]
    start = cubes[obj, :3]
    info = {"instruction": instruction, "family": family, "object": obj, "goal": goal,
            "start": start, "plates": plates, "lifted": jnp.zeros((), bool)}
    return cubes, self._goal_point(info), info

  def _goal_point(self, info: dict) -> jax.Array:
    """f32[3]: the carry point above the cube (pick), the plate (place) or the point past the
    push distance (push), from `info`'s instruction, `start` and `plates`."""
    family, goal, start, plates = info["family"], info["goal"], info["start"], info["plates"]
    push_to = start[:2] + (self.config.push_distance + 0.03) * self._directions[goal]
    pick, place = ins.FAMILIES.index("pick"), ins.FAMILIES.index("place")
    return jnp.where(family == pick, start + jnp.array([0.0, 0.0, CARRY_HEIGHT]),
                     jnp.where(family == place, plates[jnp.minimum(goal, plates.shape[0] - 1)],
                               jnp.append(push_to, 0.0)))

  def placed(self, objects, target, task_info):
    """`start` is where the instructed cube is after DR's pose jitter; the goal point follows."""
    del target
    task_info = dict(task_info, start=objects[task_info["object"], :3])
    return self._goal_point(task_info), task_info

  def marker_positions(self, target, task_info):
    return jnp.concatenate([target[None], task_info["plates"]])

  # -- predicates -------------------------------------------------------------------------------

  def cube(self, data: mjx.Data, info: dict) -> jax.Array:
    """f32[3]: the instructed cube's position."""
    return self.object_pos(data, info["object"])

  def resting(self, data: mjx.Data, info: dict) -> jax.Array:
    return self.cube(data, info)[2] < self.config.rest_height

  def held_up(self, data: mjx.Data, info: dict) -> jax.Array:
    cube = self.cube(data, info)
    return ((cube[2] > self.config.lift_height)
            & (jnp.linalg.norm(cube - self.grip_pos(data)) < 0.03))

  def on_plate(self, data: mjx.Data, info: dict) -> jax.Array:
    plate = info["plates"][jnp.minimum(info["goal"], len(scene.PLATE_BODIES) - 1)]
    near = jnp.linalg.norm(self.cube(data, info)[:2] - plate[:2]) < self.config.plate_radius - 0.01
    change = 2 * self.half_size_change(info, info["object"])
    released = self.gripper_opening(data) > 2 * arm.CUBE_HALF + 0.005 + change
    return near & self.resting(data, info) & released

  def pushed(self, data: mjx.Data, info: dict) -> jax.Array:
    moved = self.cube(data, info)[:2] - info["start"][:2]
    along = jnp.dot(moved, self._directions[info["goal"]])
    return (along >= self.config.push_distance) & self.resting(data, info)

  def in_goal(self, data: mjx.Data, info: dict) -> jax.Array:
    """bool[]: the cube is set down where the instruction says (place, push; never for pick)."""
    return jnp.where(self.family_is(info, "place"), self.on_plate(data, info),
                     self.family_is(info, "push") & self.pushed(data, info))

  def success(self, data, info):
    return jnp.where(self.family_is(info, "pick"), self.held_up(data, info),
                     self.in_goal(data, info))

  def update_task_info(self, data, info):
    info["lifted"] = info["lifted"] | (self.cube(data, info)[2] > self.config.lift_height)
    return info

  # -- reward and observation -------------------------------------------------------------------

  def reward_terms(self, data, info, action):
    cube = self.cube(data, info)
    reach = jnp.linalg.norm(cube - self.grip_pos(data))
    to_goal = 1.0 - jnp.tanh(jnp.linalg.norm(cube[:2] - info["target"][:2]) / 0.1)
    lift = jnp.clip((cube[2] - arm.CUBE_HALF) / 0.1, 0.0, 1.0)
    return {"reach_cube": 1.0 - jnp.tanh(reach / 0.1),
            "cube_to_goal": jnp.where(self.family_is(info, "pick"), lift, to_goal),
            "success": self.success(data, info).astype(jnp.float32),
            "action_rate": jnp.sum(jnp.square(action - info["last_action"]))}

  def task_obs(self, data, info):
    n = len(self.OBJECTS)
    positions = jnp.stack([self.object_pos(data, i) for i in range(n)])
    yaws = jnp.stack([self.object_yaw(data, i) for i in range(n)])
    cube, target = self.cube(data, info), info["target"]
    to_goal = jnp.where(self.family_is(info, "pick"), jnp.zeros(3),
                        jnp.append(target[:2] - cube[:2], 0.0))
    return jnp.concatenate([
        self._encoding[info["instruction"]], positions.reshape(-1),
        jnp.stack([jnp.cos(4 * yaws), jnp.sin(4 * yaws)], -1).reshape(-1),
        info["plates"][:, :2].reshape(-1), cube, cube - self.grip_pos(data), target, to_goal,
        info["lifted"].astype(jnp.float32)[None]])
