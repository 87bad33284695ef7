"""MJX body-tree scans on the CPU without XLA's fusion blow-up on long kinematic chains.

MJX's `scan.body_tree` (forward kinematics, composite inertia, velocities, RNE) is unrolled in
Python, one `vmap(f)` per tree depth, so each depth's outputs feed the next depth's ops directly.
XLA's CPU instruction fusion then duplicates the producers into their consumers, and the
duplication compounds level by level: one `mjx.kinematics` of the 7-DoF arm with its gripper
(tree depth 10) took ~800 ms for 16 worlds on a 2-core CPU, with fusion disabled 0.8 ms, while
the quadruped (depth 4) takes ~1 ms either way.

`install()` wraps each depth's `f` so its outputs pass through `jax.lax.optimization_barrier`
when the default backend is the CPU and the tree is at least `MIN_DEPTH` bodies deep: fusion still
works inside a depth but cannot reach across one (the arm: 3.7 ms). Shallower trees (the quadruped,
cart-pole) and accelerator traces are untouched, so their programs are exactly as before. Every vlajax import installs it (`vlajax/__init__.py`);
`VLAJAX_MJX_FUSION=1` in the environment keeps MJX's scan as it is.
"""
from __future__ import annotations

import functools
import os

import jax
import numpy as np

MIN_DEPTH = 6   # the 6-DoF bridge arm: 21 ms per 16-world step unfenced; the quadruped is 4 deep
_installed = False


def tree_depth(m) -> int:
  """The deepest body's number of ancestors below the world body (world = 0)."""
  parents = np.asarray(m.body_parentid)
  depth = np.zeros(len(parents), np.int64)
  for body in range(1, len(parents)):   # MuJoCo orders parents before children
    depth[body] = depth[parents[body]] + 1
  return int(depth.max(initial=0))


def install() -> None:
  """Patches `mujoco.mjx._src.scan.body_tree` (idempotent; no-op with `VLAJAX_MJX_FUSION=1`)."""
  global _installed  # pylint: disable=global-statement
  if _installed or os.environ.get("VLAJAX_MJX_FUSION") == "1":
    return
  from mujoco.mjx._src import scan  # pylint: disable=import-outside-toplevel
  original = scan.body_tree

  @functools.wraps(original)
  def body_tree(m, f, in_types, out_types, *args, reverse=False):
    if jax.default_backend() != "cpu" or tree_depth(m) < MIN_DEPTH:
      return original(m, f, in_types, out_types, *args, reverse=reverse)

    def fenced(*f_args):
      return jax.lax.optimization_barrier(f(*f_args))
    return original(m, fenced, in_types, out_types, *args, reverse=reverse)

  scan.body_tree = body_tree
  _installed = True
