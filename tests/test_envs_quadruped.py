"""quadruped_joystick: shapes, jit+vmap over 64 envs, rewards, termination, observation noise, errors.

MJX with contacts compiles slowly on CPU, so one jitted batched reset/step (`compiled()`, cached for
the session and shared with tests/test_envs_randomization.py) serves every test here.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from vlajax import envs
from vlajax.core.mesh import make_mesh
from vlajax.envs.locomotion import randomization as dr_lib
from vlajax.envs.locomotion import quadruped_joystick as qj

BATCH = 64


@functools.lru_cache(maxsize=None)
def compiled():
  """(env, reset(keys u32[B,2], ranges {f: f32[B,2]}), step(state, action f32[B,12])), jitted.

  Inputs are always sharded over 4 devices along the batch (one compilation serves every test,
  including the per-device ones).
  """
  env = envs.make("quadruped_joystick")
  sharding = NamedSharding(make_mesh({"data": 4}), PartitionSpec("data"))
  reset_fn = jax.jit(jax.vmap(lambda k, r: env.reset(k, dr_ranges=r)))
  step_fn = jax.jit(jax.vmap(env.step))

  def reset(keys, ranges):
    return reset_fn(*jax.device_put((keys, ranges), sharding))

  def step(state, action):
    return step_fn(*jax.device_put((state, action), sharding))
  return env, reset, step


def batched_ranges(ranges, batch=BATCH):
  return {k: jnp.broadcast_to(jnp.asarray(v), (batch,) + jnp.shape(v)) for k, v in ranges.items()}


@pytest.fixture(scope="module")
def rollout():
  """64 envs, default DR, random actions for 6 steps: (env, states [s0..s6], actions)."""
  env, reset, step = compiled()
  keys = jax.random.split(jax.random.PRNGKey(0), BATCH)
  state = reset(keys, batched_ranges(env.default_dr_ranges()))
  states, actions = [state], []
  rng = jax.random.PRNGKey(1)
  for _ in range(6):
    rng, k = jax.random.split(rng)
    action = 0.3 * jax.random.uniform(k, (BATCH, env.action_size), minval=-1, maxval=1)
    state = step(state, action)
    states.append(state)
    actions.append(action)
  return env, states, actions


def test_single_env_shapes_and_dtypes():
  env = envs.make("quadruped_joystick")
  state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
  assert env.action_size == 12
  assert state.obs["state"].shape == (48,) and state.obs["state"].dtype == jnp.float32
  assert state.obs["privileged_state"].shape == (87,)
  assert state.obs["privileged_state"].dtype == jnp.float32
  assert state.reward.shape == () and state.reward.dtype == jnp.float32
  assert state.done.shape == () and state.done.dtype == jnp.float32
  assert set(state.metrics) == ({f"reward/{t}" for t in qj.REWARD_TERMS} |
                                set(qj.TRACKING_METRICS))
  assert state.info["step"].dtype == jnp.int32 and state.info["step"].shape == ()
  assert state.info["command"].shape == (3,)
  assert state.info["last_action"].shape == (12,)
  assert state.info["action_history"].shape == (4, 12)
  assert state.info["dr"]["action_latency"].dtype == jnp.int32
  assert set(state.info["dr_ranges"]) == set(dr_lib.FIELDS)
  assert all(v.shape == (2,) for v in state.info["dr_ranges"].values())
  next_state = jax.eval_shape(env.step, state, jnp.zeros(12))
  assert jax.tree.structure(next_state) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(next_state), jax.tree.leaves(state)):
    assert a.shape == b.shape and a.dtype == b.dtype
  assert env.observation_size == {"state": (48,), "privileged_state": (87,)}


def test_disabled_randomization_keeps_the_state_layout():
  on = envs.make("quadruped_joystick")
  off = envs.make("quadruped_joystick", randomization={"enabled": False})
  s_on = jax.eval_shape(on.reset, jax.random.PRNGKey(0))
  s_off = jax.eval_shape(off.reset, jax.random.PRNGKey(0))
  assert jax.tree.structure(s_on) == jax.tree.structure(s_off)
  s_off = jax.eval_shape(off.step, s_off, jnp.zeros(12))
  assert jax.tree.structure(s_on) == jax.tree.structure(s_off)


def test_jit_vmap_64_envs(rollout):
  env, states, _ = rollout
  for state in states:
    assert state.obs["state"].shape == (BATCH, 48)
    assert state.obs["privileged_state"].shape == (BATCH, 87)
    assert state.reward.shape == (BATCH,) and state.done.shape == (BATCH,)
    assert state.data.qpos.shape == (BATCH, 19)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.obs))
  last = states[-1]
  np.testing.assert_array_equal(np.asarray(last.info["step"]), 6)
  # Small random actions for 0.12 s: nobody falls, the trunk stays near standing height.
  assert float(jnp.max(last.done)) == 0.0
  assert 0.18 < float(jnp.min(last.data.qpos[:, 2])) and float(jnp.max(last.data.qpos[:, 2])) < 0.35
  # Per-env initial states differ (pose, yaw, command).
  assert len(np.unique(np.asarray(states[0].data.qpos[:, 0]))) == BATCH
  assert len(np.unique(np.asarray(states[0].info["command"][:, 0]))) > BATCH // 2


def test_reward_is_clipped_scaled_sum_of_logged_terms(rollout):
  env, states, actions = rollout
  for state in states[1:]:
    total = sum(v for k, v in state.metrics.items() if k.startswith("reward/"))
    expected = jnp.clip(total * env.dt, 0.0, 1e4)
    np.testing.assert_allclose(state.reward, expected, rtol=1e-5, atol=1e-7)
    assert float(jnp.min(state.reward)) >= 0.0
  # Terms are logged already multiplied by their scale: penalties are <= 0, bonuses >= 0.
  last = states[-1].metrics
  assert float(jnp.max(last["reward/torques"])) < 0.0
  assert float(jnp.max(last["reward/action_rate"])) < 0.0
  assert float(jnp.min(last["reward/tracking_lin_vel"])) > 0.0
  # Tracking errors are consistent with the tracking reward exp(-err^2 / sigma).
  sigma = env.config.reward_config.tracking_sigma
  np.testing.assert_allclose(
      last["reward/tracking_lin_vel"] / env.config.reward_config.scales.tracking_lin_vel,
      jnp.exp(-jnp.square(last["tracking/lin_vel_error"]) / sigma), rtol=1e-4)
  # The action-rate penalty is exactly scale * |a_t - a_{t-1}|^2.
  scale = env.config.reward_config.scales.action_rate
  expected = scale * jnp.sum(jnp.square(actions[-1] - actions[-2]), axis=-1)
  np.testing.assert_allclose(last["reward/action_rate"], expected, rtol=1e-5)


def test_tracking_reward_prefers_matching_velocity(rollout):
  env, states, _ = rollout
  state = jax.tree.map(lambda x: x[0], states[-1])
  local_vel = np.asarray(state.obs["privileged_state"][0:3])
  gyro = np.asarray(state.obs["privileged_state"][3:6])
  info = dict(state.info, command=jnp.array([local_vel[0], local_vel[1], gyro[2]]))
  terms = jax.jit(lambda info: env._reward_terms(state.data, info, jnp.zeros(12), jnp.zeros(4),
                                                  jnp.zeros(4, bool), jnp.zeros(())))
  match = terms(info)
  miss = terms(dict(state.info, command=jnp.array([local_vel[0] + 1.0, local_vel[1], gyro[2] - 1.0])))
  np.testing.assert_allclose(match["tracking_lin_vel"], 1.0, rtol=1e-5)
  np.testing.assert_allclose(match["tracking_ang_vel"], 1.0, rtol=1e-5)
  np.testing.assert_allclose(miss["tracking_lin_vel"], np.exp(-1.0 / 0.25), rtol=1e-4)
  np.testing.assert_allclose(miss["tracking_ang_vel"], np.exp(-1.0 / 0.25), rtol=1e-4)


def test_observation_noise_is_bounded_and_privileged_state_is_clean(rollout):
  env, states, _ = rollout
  state = states[-1]
  noisy, clean = np.asarray(state.obs["state"]), np.asarray(state.obs["privileged_state"][:, :48])
  scales = env.config.noise_config.scales
  diff = np.abs(noisy - clean)
  assert diff[:, 0:3].max() <= scales.linvel + 1e-6 and diff[:, 0:3].max() > 0.01
  assert diff[:, 3:6].max() <= scales.gyro + 1e-6
  assert diff[:, 6:9].max() <= scales.gravity + 1e-6
  # Joint angles also carry the DR Gaussian noise (std <= 0.005): allow 6 sigma on top.
  assert diff[:, 9:21].max() <= scales.joint_pos + 6 * 0.005
  assert diff[:, 21:33].max() <= scales.joint_vel + 1e-6
  np.testing.assert_array_equal(diff[:, 33:48], 0.0)   # last action and command are exact
  # The clean part matches the physics state.
  np.testing.assert_allclose(clean[:, 9:21], state.data.qpos[:, 7:] - env._default_pose, atol=1e-6)
  # Privileged DR features are the draws.
  np.testing.assert_allclose(state.obs["privileged_state"][:, 69], state.info["dr"]["floor_friction"])
  np.testing.assert_allclose(state.obs["privileged_state"][:, 86],
                             state.info["dr"]["action_latency"])


def test_fall_terminates(rollout):
  env, states, _ = rollout
  _, _, step = compiled()
  state = states[0]
  qpos = state.data.qpos
  upside_down = qpos.at[:8, 3:7].set(jnp.array([0.0, 1.0, 0.0, 0.0]))     # flipped
  low = upside_down.at[8:16, 2].set(0.05).at[8:16, 3:7].set(jnp.array([1.0, 0, 0, 0]))
  state = state.replace(data=state.data.replace(qpos=low))
  out = step(state, jnp.zeros((BATCH, 12)))
  done = np.asarray(out.done)
  np.testing.assert_array_equal(done[:16], 1.0)
  np.testing.assert_array_equal(done[16:], 0.0)
  np.testing.assert_allclose(out.metrics["reward/termination"][:16],
                             env.config.reward_config.scales.termination)


def test_commands_resample_on_schedule(rollout):
  env, states, _ = rollout
  _, _, step = compiled()
  period = env.config.command_config.resample_steps
  state = states[0]
  info = dict(state.info, step=jnp.full((BATCH,), period - 1, jnp.int32))
  out = step(state.replace(info=info), jnp.zeros((BATCH, 12)))
  changed = np.any(np.asarray(out.info["command"]) != np.asarray(state.info["command"]), axis=-1)
  assert changed.mean() > 0.5
  out = step(states[0], jnp.zeros((BATCH, 12)))
  np.testing.assert_array_equal(out.info["command"], states[0].info["command"])
  # Commands stay inside the configured amplitudes.
  amp = np.asarray(env.config.command_config.amplitude)
  assert np.all(np.abs(np.asarray(states[0].info["command"])) <= amp)


def test_bad_config_and_ranges_name_the_problem():
  with pytest.raises(KeyError, match="reward_config.scales.nope"):
    envs.make("quadruped_joystick", reward_config={"scales": {"nope": 1.0}})
  with pytest.raises(KeyError, match="randomization.frction"):
    envs.make("quadruped_joystick", randomization={"frction": (0.1, 0.2)})
  with pytest.raises(ValueError, match="floor_friction"):
    envs.make("quadruped_joystick", randomization={"floor_friction": (1.0, 0.5)})
  with pytest.raises(ValueError, match="action_latency"):
    envs.make("quadruped_joystick", randomization={"action_latency": (0.0, 5.0)})
  env = envs.make("quadruped_joystick")
  ranges = env.default_dr_ranges()
  del ranges["kp_scale"]
  with pytest.raises(KeyError, match="kp_scale"):
    env.reset(jax.random.PRNGKey(0), dr_ranges=ranges)
  ranges = dict(env.default_dr_ranges(), floor_friction=jnp.zeros(3))
  with pytest.raises(ValueError, match="floor_friction"):
    env.reset(jax.random.PRNGKey(0), dr_ranges=ranges)


def test_model_matches_published_go1_figures():
  env = envs.make("quadruped_joystick")
  m = env.mj_model
  assert m.nu == 12 and m.nq == 19 and m.nv == 18
  np.testing.assert_allclose(m.body("trunk").mass, 5.204)
  assert 12.0 < m.body_mass.sum() < 13.5
  np.testing.assert_allclose(m.actuator_gainprm[:, 0], 35.0)
  np.testing.assert_allclose(m.actuator_biasprm[:, 1], -35.0)
  np.testing.assert_allclose(m.actuator_biasprm[:, 2], -0.5)
  assert env.n_substeps == 5 and env.config.episode_length == 1000
  # Only feet collide, and only with the floor; all collision shapes are primitives.
  colliding = [g for g in range(m.ngeom) if m.geom_contype[g] or m.geom_conaffinity[g]]
  names = sorted(m.geom(g).name for g in colliding)
  assert names == sorted(["floor", *qj.FEET])
  for a in qj.FEET:
    for b in qj.FEET:
      ga, gb = m.geom(a).id, m.geom(b).id
      assert not (m.geom_contype[ga] & m.geom_conaffinity[gb])
  # Overrides reach the actuators.
  stiff = envs.make("quadruped_joystick", Kp=50.0, Kd=1.0)
  np.testing.assert_allclose(stiff.mjx_model.actuator_gainprm[:, 0], 50.0)
  np.testing.assert_allclose(stiff.mjx_model.actuator_biasprm[:, 2], -1.0)
