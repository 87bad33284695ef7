"""MJX backends: `impl="warp"` against `impl="jax"` (same trajectories, DR included), auto-reset under
Warp, capacities sized from the batch, errors for bad input, and PPO running on Warp.

Warp runs on the CPU here and compiles its kernels on first use (Warp caches them on disk), and
XLA compiles MJX slowly, so batches are 2 envs, rollouts a few control steps, and each env's jitted
rollout is compiled once per backend for the module.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import ppo_locomotion as configs
from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.envs import assets, backend, wrappers
from vlajax.envs.locomotion import randomization
from vlajax.rl import ppo

needs_warp = pytest.mark.skipif(not backend.warp_available(),
                                reason='warp-lang is not importable (pip install -e ".[warp]")')

NUM_ENVS = 2
NUM_STEPS = 5

# Largest |jax - warp| allowed over the rollout (the initial state and NUM_STEPS control steps).
# Cart-pole has no contacts: both backends integrate the same equations in float32 and differ
# only by rounding order (measured <= 6e-8 here, <= 1.2e-7 over 10 steps), so 1e-5 leaves 100x
# margin and still catches any real discrepancy (a missed substep or wrong force moves qpos by
# > 1e-3).
# The quadruped's contacts go through MuJoCo's Newton solver, which its MJCF caps at 4 iterations
# (Playground's Go1 value). Both backends stop it before convergence, at different points, and
# the gap compounds through contact events: over 10 steps of 16 envs (3 seeds) up to 0.03 in qpos
# and several rad/s in joint velocities. So the comparison runs the solver to convergence
# (`_converged_solver`: 50 iterations, tolerance 1e-10), where the same measurement gives qpos <=
# 1.1e-5 and observations <= 1.1e-3 (joint velocities; the rest <= 3e-4): the tolerances are
# about 10x those, far below what a wrong DR draw or contact model would make (DR moves masses by
# 10% and Kp by 30%).
TOLERANCE = {
    "cartpole": {"qpos": 1e-5, "obs": 1e-5},
    "cartpole_swingup": {"qpos": 1e-5, "obs": 1e-5},
    "quadruped_joystick": {"qpos": 1e-4, "obs": 1e-2},
}


def _converged_solver(monkeypatch):
  """Envs built from now on run the constraint solver to convergence."""
  load = assets.load

  def converged(name):
    mj_model = load(name)
    mj_model.opt.iterations, mj_model.opt.ls_iterations, mj_model.opt.tolerance = 50, 50, 1e-10
    return mj_model

  monkeypatch.setattr(assets, "load", converged)


def _rollout(env):
  """`NUM_STEPS` steps of `NUM_ENVS` envs under fixed random actions; per step (initial state
  first): qpos, observation `state`, Warp capacity overflow flags; and the first state's DR draws."""
  batched = wrappers.VmapWrapper(env)
  actions = jax.random.uniform(jax.random.PRNGKey(1), (NUM_STEPS, NUM_ENVS, env.action_size),
                               minval=-1.0, maxval=1.0)

  def record(state):
    return {"qpos": state.data.qpos, "obs": state.obs["state"],
            "overflow": backend.capacity_overflow(state.data)}

  def run(key):
    state = batched.reset(jax.random.split(key, NUM_ENVS))
    first = record(state)
    _, traj = jax.lax.scan(lambda s, a: (batched.step(s, a),) * 2, state, actions)
    traj = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, record(traj))
    return traj, state.info.get("dr", {})

  return jax.device_get(jax.jit(run)(jax.random.PRNGKey(0)))


# The quadruped's comparison (~1 min: Warp compiles its contact kernels on the CPU) runs with
# `python -m pytest -m slow tests/test_envs_warp.py`; the cart-poles run in the default suite.
# The arm tasks (issue 17) are not compared yet: `test_every_env_has_a_warp_comparison` lists them.
WITHOUT_WARP_COMPARISON = ("arm_pick_cube", "arm_push_cube", "arm_reach", "tabletop_language")


def test_every_env_has_a_warp_comparison():
  assert sorted(set(envs.names()) - set(TOLERANCE)) == sorted(WITHOUT_WARP_COMPARISON)


@needs_warp
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n == "quadruped_joystick" else n for n in sorted(TOLERANCE)])
def test_jax_and_warp_trajectories_match(name, monkeypatch):
  if name == "quadruped_joystick":
    _converged_solver(monkeypatch)
  (jax_traj, jax_dr), (warp_traj, warp_dr) = (_rollout(envs.make(name, impl=impl))
                                              for impl in ("jax", "warp"))
  assert not warp_traj["overflow"].any(), "default naconmax_per_env / njmax overflowed"
  for key, tol in TOLERANCE[name].items():
    assert np.all(np.isfinite(warp_traj[key]))
    np.testing.assert_allclose(warp_traj[key], jax_traj[key], rtol=0, atol=tol, err_msg=key)
  jax.tree.map(np.testing.assert_array_equal, warp_dr, jax_dr)  # the same per-env DR draws
  if name == "quadruped_joystick":  # DR on: the two worlds really run different models
    assert warp_dr["floor_friction"][0] != warp_dr["floor_friction"][1]


@needs_warp
def test_auto_reset_under_warp():
  """One env falls and is replaced by a fresh initial state while the other keeps going."""
  env = envs.make("cartpole", impl="warp", fall_angle=0.3)
  train_env = wrappers.wrap_for_training(env, episode_length=100)
  actions = jnp.zeros((30, NUM_ENVS, 1)).at[:, 0].set(1.0)  # env 0 pushed hard, env 1 left alone

  def run(key):
    state = train_env.reset(jax.random.split(key, NUM_ENVS))
    def body(s, a):
      s = train_env.step(s, a)
      return s, (s.done, s.info["steps"], s.data.qpos, s.obs["state"], s.info["final_obs"]["state"])
    return jax.lax.scan(body, state, actions)[1]

  done, steps, qpos, obs, final_obs = jax.device_get(jax.jit(run)(jax.random.PRNGKey(0)))
  fell = np.flatnonzero(done[:, 0])
  assert fell.size, "env 0 never fell"
  t = fell[0]
  assert not done[:t + 1, 1].any()
  cfg = env.config
  # env 0: reset to a fresh start (step counter 0, pose within the reset noise); the observation
  # that ended its episode is kept in final_obs.
  assert steps[t, 0] == 0
  assert abs(qpos[t, 0, 0]) <= cfg.init_pos_noise and abs(qpos[t, 0, 1]) <= cfg.init_angle_noise
  assert final_obs[t, 0, 1] < np.cos(cfg.fall_angle) or abs(final_obs[t, 0, 0]) > 1.8  # it fell
  assert not np.allclose(obs[t, 0], final_obs[t, 0])
  # env 1: untouched by env 0's reset.
  assert steps[t, 1] == t + 1
  np.testing.assert_array_equal(obs[t, 1], final_obs[t, 1])


@needs_warp
def test_ppo_runs_under_warp():
  config = configs.get_config("smoke")
  config.ppo.update(dict(num_envs=4, unroll_length=4, num_minibatches=2, num_epochs=1))
  env = envs.make(config.env_name, config=config.env, impl="warp")
  # Every test device (4): Warp's buffers shared by all worlds (`nacon` is i32[1]) stay
  # replicated while the per-world leaves are split (backend.state_shardings).
  mesh = mesh_lib.make_mesh({"data": -1})
  assert mesh.devices.size == 4
  learner = ppo.Learner(env, config.ppo, mesh)
  state = learner.init(jax.random.PRNGKey(0))
  state, metrics = learner.iteration(state)
  assert np.isfinite(float(metrics["loss/total"]))


# -- capacities and errors (no compilation) ----------------------------------------------------

@needs_warp
def test_contact_buffer_is_sized_for_the_whole_batch():
  env = envs.make("quadruped_joystick", impl="warp", naconmax_per_env=5, njmax=40)
  state = jax.eval_shape(wrappers.VmapWrapper(env).reset, jax.random.split(jax.random.PRNGKey(0), 3))
  assert state.data._impl.contact__dist.shape == (5 * 3,)   # one buffer shared by the 3 worlds
  assert state.data._impl.efc__force.shape == (3, 40)        # constraint rows per world
  with backend.num_worlds(2), backend.num_worlds(3):         # nested vmaps multiply
    assert backend.current_num_worlds() == 6
  shardings = backend.state_shardings(state, 3, "batched", "replicated")
  assert shardings.data.qpos == "batched" and shardings.data._impl.nacon == "replicated"


def test_every_registered_env_defaults_to_jax():
  for name in envs.names():
    config = envs.default_config(name)
    assert config.impl == "jax" and config.naconmax_per_env >= 0 and config.njmax >= 1, name


def test_bad_impl_names_impl_and_the_allowed_values():
  with pytest.raises(ValueError, match=r"impl must be one of \('jax', 'warp'\), got 'mujoco'"):
    envs.make("cartpole", impl="mujoco")


def test_warp_without_warp_lang_says_what_to_install(monkeypatch):
  monkeypatch.setattr(backend, "warp_available", lambda: False)
  with pytest.raises(ImportError, match=re.escape('pip install -e ".[warp]"')):
    envs.make("cartpole", impl="warp")


@needs_warp
def test_bad_capacities_name_the_field():
  with pytest.raises(ValueError, match="njmax"):
    envs.make("cartpole", impl="warp", njmax=0)
  with pytest.raises(ValueError, match="naconmax_per_env"):
    envs.make("cartpole", impl="warp", naconmax_per_env=-1)


@needs_warp
def test_randomized_fields_are_batchable_under_warp():
  model = envs.make("cartpole", impl="warp").mjx_model
  fields = randomization.MODEL_FIELDS + ("cam_pos", "cam_quat", "light_pos", "light_diffuse")
  backend.check_batchable(model, fields)  # every field DR writes has a per-world copy in Warp
  with pytest.raises(ValueError, match="'geom_type'"):
    backend.check_batchable(model, ["geom_type"])
  backend.check_batchable(envs.make("cartpole").mjx_model, ["geom_type"])  # JAX batches anything
