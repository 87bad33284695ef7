"""The `tabletop_language` scene: the arm scene (`assets/arm_7dof.xml`) with four coloured cubes
and two plates, composed with `mujoco.MjSpec` so the robot is defined once.

Objects (free joints, in order): `cube` (red, the arm scene's own), `cube_green`, `cube_blue`,
`cube_yellow`; each 4 cm, 0.1 kg, with contact pairs to the table, the pads, the hand and each other.
Plates: mocap bodies `plate_white`, `plate_purple` (flat discs of radius `PLATE_RADIUS`, visual only:
a cube "on a plate" rests on the table inside the disc). The arm scene's `target` marker is made
invisible: a language-conditioned policy must find the goal from the instruction, not a marker.
Friction cones are pyramidal here (see `tabletop_model`). Mocap order: `target`, `plate_white`, `plate_purple`.
"""
from __future__ import annotations

import mujoco
import numpy as np

from vlajax.envs import assets
from vlajax.envs.manipulation import instructions

COLOURS = {"red": (0.85, 0.15, 0.15, 1.0), "green": (0.15, 0.7, 0.2, 1.0),
           "blue": (0.15, 0.3, 0.85, 1.0), "yellow": (0.95, 0.8, 0.1, 1.0),
           "white": (0.95, 0.95, 0.95, 1.0), "purple": (0.55, 0.2, 0.7, 1.0)}
PLATE_RADIUS = 0.06   # m
OBJECT_JOINTS = tuple("cube" if c == "red" else f"cube_{c}" for c in instructions.OBJECTS)
PLATE_BODIES = tuple(f"plate_{p}" for p in instructions.PLATES)
_TOUCHING = ("table", "pad_left", "pad_right", "hand")


def tabletop_model() -> mujoco.MjModel:
  """The compiled scene (see the module docstring)."""
  spec = mujoco.MjSpec.from_file(str(assets.path("arm_7dof")))
  red = spec.body("cube")
  for name in OBJECT_JOINTS[1:]:
    colour = name.removeprefix("cube_")
    body = spec.worldbody.add_body(name=name, pos=red.pos)
    body.add_freejoint(name=name)
    body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.02, 0.02, 0.02], mass=0.1,
                  rgba=COLOURS[colour], friction=[1.0, 0.01, 0.001])
    for other in _TOUCHING:
      spec.add_pair(geomname1=name, geomname2=other)
  for i, first in enumerate(OBJECT_JOINTS):
    for second in OBJECT_JOINTS[i + 1:]:
      spec.add_pair(geomname1=first, geomname2=second)
  for name in PLATE_BODIES:
    plate = spec.worldbody.add_body(name=name, mocap=True)
    plate.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[PLATE_RADIUS, 0.002, 0],
                   rgba=COLOURS[name.removeprefix("plate_")])
  for geom in ("target", "target_point"):
    spec.geom(geom).rgba = [0.0, 0.0, 0.0, 0.0]
  # Pyramidal friction cones: with the arm scene's elliptic cones and the ~5x more (mostly
  # inactive) contacts of this scene, MJX's solver let a grasped cube squeeze out of the pads
  # (the same state and controls hold it in the one-cube scene; 50 solver iterations did not help,
  # pyramidal did). impratio stays 10.
  spec.option.cone = mujoco.mjtCone.mjCONE_PYRAMIDAL
  home = spec.key("home")
  extra = np.tile([0.0, 0.0, 0.02, 1.0, 0.0, 0.0, 0.0], len(OBJECT_JOINTS) - 1)
  home.qpos = np.concatenate([np.asarray(home.qpos), extra])
  home.mpos = np.zeros(3 * (1 + len(PLATE_BODIES)))
  home.mquat = np.tile([1.0, 0.0, 0.0, 0.0], 1 + len(PLATE_BODIES))
  return spec.compile()
