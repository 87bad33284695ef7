"""core/cpu_fusion: MJX's body-tree scans are fenced per depth on the CPU for deep trees only."""
import jax
import jax.numpy as jnp
from mujoco import mjx

import vlajax  # noqa: F401  (installs the patch)
from vlajax.core import cpu_fusion
from vlajax.envs import assets


def _kinematics_hlo(name: str) -> str:
  model = mjx.put_model(assets.load(name))
  data = jax.vmap(lambda _: mjx.make_data(model))(jnp.arange(2))
  return jax.jit(jax.vmap(lambda d: mjx.kinematics(model, d))).lower(data).as_text()


def test_deep_trees_are_fenced_and_shallow_ones_untouched():
  assert cpu_fusion.tree_depth(assets.load("arm_7dof")) == 9
  assert cpu_fusion.tree_depth(assets.load("quadruped")) == 4 < cpu_fusion.MIN_DEPTH
  assert "optimization_barrier" in _kinematics_hlo("arm_7dof")
  assert "optimization_barrier" not in _kinematics_hlo("quadruped")   # the same program as before


def test_fenced_kinematics_match_native_mujoco():
  import mujoco  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  mj_model = assets.load("arm_7dof")
  mj_data = mujoco.MjData(mj_model)
  mujoco.mj_resetDataKeyframe(mj_model, mj_data, 0)
  mujoco.mj_kinematics(mj_model, mj_data)
  model = mjx.put_model(mj_model)
  data = mjx.make_data(model).replace(qpos=jnp.asarray(mj_data.qpos, jnp.float32))
  out = jax.jit(lambda d: mjx.kinematics(model, d))(data)
  np.testing.assert_allclose(np.asarray(out.site_xpos), mj_data.site_xpos, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.xquat), mj_data.xquat, atol=1e-5)
