"""Domain randomization of the arm tasks (`vlajax/envs/manipulation/randomization.py`).

Model fields are checked eagerly (no physics); physics effects run through one jitted rollout of
`arm_push_cube` (ee_delta) shared by every test: 4 envs, 40 control steps, per-env DR ranges and
per-step actions, so MJX compiles it once (~1-2 min on 2 CPU cores). Each env of a test starts from
the same reset key, so the envs differ only in what the test randomizes.
"""
import copy

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from vlajax import envs
from vlajax.envs import adr, base, brax_adapter, wrappers
from vlajax.envs.manipulation import arm
from vlajax.envs.manipulation import randomization as arm_dr

B, T = 4, 40
FINGERS = slice(7, 9)


@pytest.fixture(scope="module")
def env():
  return envs.make("arm_push_cube", action_space="ee_delta")


@pytest.fixture(scope="module")
def reset_fn(env):
  return jax.jit(jax.vmap(env.reset))


@pytest.fixture(scope="module")
def rollout_fn(env):
  """`run(state [B], actions f32[T, B, 7]) -> (ctrl, qpos, obs, privileged)`, each [T, B, ...]."""
  @jax.jit
  def run(state, actions):
    def body(s, a):
      s = jax.vmap(env.step)(s, a)
      return s, (s.data.ctrl, s.data.qpos, s.obs["state"], s.obs["privileged_state"])
    _, trace = jax.lax.scan(body, state, actions)
    return trace
  return lambda state, actions: jax.tree.map(np.asarray, run(state, actions))


def _nominal(env):
  """Nominal ranges, `kp_scale` per actuator ([2, nu]: one shape for every test's batch)."""
  ranges = arm_dr.nominal_ranges(env.dr_targets)
  return dict(ranges, kp_scale=jnp.ones((2, env.dr_targets.num_actuators)))


def _batched_ranges(per_env):
  """[B] ranges dicts -> one dict with a leading batch axis."""
  return {k: jnp.stack([jnp.asarray(r[k], jnp.float32) for r in per_env]) for k in per_env[0]}


def _point(value):
  return jnp.array([value, value], jnp.float32)


def _reset(env, reset_fn, per_env, seed=0):
  keys = jnp.tile(jax.random.PRNGKey(seed)[None], (len(per_env), 1))
  return reset_fn(keys, _batched_ranges(per_env))


def _actions(arm_action=(0.0, 0.0, 0.0), gripper=1.0):
  """f32[T, B, 7]: the same ee_delta action for every env and step."""
  action = jnp.array([*arm_action, 0.0, 0.0, 0.0, gripper], jnp.float32)
  return jnp.broadcast_to(action, (T, B, 7))


# -- model fields (eager, no physics) ------------------------------------------------------------

EXPECTED_FIELDS = {
    "object_mass_scale": {"body_mass", "body_inertia", "body_subtreemass", "body_invweight0",
                          "dof_invweight0"},
    "object_friction": {"pair_friction"},
    "table_friction": {"pair_friction"},
    "object_size_scale": {"body_mass", "body_inertia", "body_subtreemass", "body_invweight0",
                          "dof_invweight0", "geom_size", "geom_rbound", "geom_aabb"},
    "object_xy_offset": set(), "object_yaw_offset": set(), "action_latency": set(),
    "joint_pos_noise": set(),
    "kp_scale": {"actuator_gainprm", "actuator_biasprm"},
}
OFF_NOMINAL = {"object_mass_scale": 2.0, "object_friction": 0.3, "table_friction": 0.3,
               "object_size_scale": 1.2, "object_xy_offset": 0.01, "object_yaw_offset": 0.2,
               "action_latency": 2.0, "joint_pos_noise": 0.01, "kp_scale": 0.5}


@pytest.mark.parametrize("name", ["arm_reach", "tabletop_language"])
def test_each_field_changes_exactly_its_model_fields(name):
  env = envs.make(name)
  t, model = env.dr_targets, env.mjx_model
  nominal = _nominal(env)
  fields = arm_dr.model_fields(model, arm_dr.sample(jax.random.PRNGKey(0), nominal, t), t)
  for field, value in fields.items():   # nominal ranges reproduce the model bit for bit
    np.testing.assert_array_equal(np.asarray(value), np.asarray(getattr(model, field)), field)
  assert set(fields) == set(arm_dr.MODEL_FIELDS) and set(EXPECTED_FIELDS) == set(arm_dr.FIELDS)
  for dr_field, expected in EXPECTED_FIELDS.items():
    ranges = dict(nominal, **{dr_field: _point(OFF_NOMINAL[dr_field])})
    draws = arm_dr.sample(jax.random.PRNGKey(0), ranges, t)
    changed = {f for f, v in arm_dr.model_fields(model, draws, t).items()
               if not np.array_equal(np.asarray(v), np.asarray(getattr(model, f)))}
    assert changed == expected, (dr_field, changed)
  # Friction lands in the right pairs' sliding coefficients only.
  ranges = dict(nominal, object_friction=_point(0.3), table_friction=_point(0.7))
  friction = np.asarray(arm_dr.model_fields(
      model, arm_dr.sample(jax.random.PRNGKey(0), ranges, t), t)["pair_friction"])
  np.testing.assert_allclose(friction[t.grip_pairs.reshape(-1), :2], 0.3)
  np.testing.assert_allclose(friction[t.table_pairs, :2], 0.7)
  nominal_friction = env.mj_model.pair_friction.astype(np.float32)
  np.testing.assert_array_equal(friction[:, 2:], nominal_friction[:, 2:])
  touched = np.r_[t.grip_pairs.reshape(-1), t.table_pairs]
  others = np.setdiff1d(np.arange(env.mj_model.npair), touched)
  np.testing.assert_array_equal(friction[others], nominal_friction[others])


def test_mass_size_and_gains_are_consistent_with_mujoco():
  """Scaled masses / inertias / sizes give the invweights MuJoCo's mj_setConst computes, and Kp
  scales gain and bias together."""
  env = envs.make("tabletop_language")
  t = env.dr_targets
  ranges = dict(env.default_dr_ranges(), object_mass_scale=jnp.array([0.3, 3.0]),
                object_size_scale=jnp.array([0.7, 1.3]))
  draws = arm_dr.sample(jax.random.PRNGKey(3), ranges, t)
  fields = {k: np.asarray(v) for k, v in arm_dr.model_fields(env.mjx_model, draws, t).items()}
  size, mass_scale = np.asarray(draws["object_size_scale"]), np.asarray(draws["object_mass_scale"])
  np.testing.assert_allclose(fields["body_mass"][t.object_bodies], 0.1 * mass_scale * size ** 3,
                             rtol=1e-6)
  np.testing.assert_allclose(fields["geom_size"][t.object_geoms], 0.02 * size[:, None] * np.ones(3),
                             rtol=1e-6)
  m = copy.deepcopy(env.mj_model)
  for name in ("body_mass", "body_inertia", "geom_size"):
    getattr(m, name)[...] = fields[name]
  mujoco.mj_setConst(m, mujoco.MjData(m))
  for name in ("body_subtreemass", "body_invweight0", "dof_invweight0"):
    np.testing.assert_allclose(fields[name], getattr(m, name), rtol=1e-5, err_msg=name)
  kp = fields["actuator_gainprm"][:, 0]
  nominal_kp = env.mj_model.actuator_gainprm[:, 0]
  np.testing.assert_allclose(kp, nominal_kp * np.asarray(draws["kp_scale"]), rtol=1e-6)
  np.testing.assert_array_equal(fields["actuator_biasprm"][:, 1], -kp)


def test_place_objects_offsets_turns_and_rests_scaled_objects():
  env = envs.make("tabletop_language")
  t = env.dr_targets
  poses = jax.vmap(arm.cube_pose)(jnp.array([[0.4, 0.0], [0.5, 0.1], [0.6, -0.1], [0.5, -0.2]]),
                                  jnp.array([0.0, 0.3, -0.2, 0.1]))
  nominal = arm_dr.sample(jax.random.PRNGKey(0), _nominal(env), t)
  np.testing.assert_array_equal(np.asarray(arm_dr.place_objects(poses, nominal, t)), poses)
  draws = arm_dr.sample(jax.random.PRNGKey(1), dict(
      _nominal(env), object_size_scale=jnp.array([0.8, 1.2]), object_xy_offset=_point(0.01),
      object_yaw_offset=_point(0.25)), t)
  placed = np.asarray(arm_dr.place_objects(poses, draws, t))
  np.testing.assert_allclose(placed[:, 2], 0.02 * np.asarray(draws["object_size_scale"]), atol=1e-7)
  np.testing.assert_allclose(placed[:, :2], np.asarray(poses)[:, :2] + 0.01, atol=1e-7)
  yaw = lambda q: np.arctan2(2 * (q[:, 0] * q[:, 3] + q[:, 1] * q[:, 2]),
                             1 - 2 * (q[:, 2] ** 2 + q[:, 3] ** 2))
  np.testing.assert_allclose(yaw(placed[:, 3:]), yaw(np.asarray(poses)[:, 3:]) + 0.25, atol=1e-5)


# -- physics effects (one compiled rollout) -------------------------------------------------------

def test_reset_rests_a_scaled_cube_on_the_table(env, reset_fn, rollout_fn):
  sizes = (0.9, 1.0, 1.1, 1.25)
  state = _reset(env, reset_fn, [dict(_nominal(env), object_size_scale=_point(s)) for s in sizes])
  cube = env._cube_qpos  # pylint: disable=protected-access
  np.testing.assert_allclose(np.asarray(state.data.qpos)[:, cube + 2], 0.02 * np.array(sizes),
                             atol=1e-6)
  _, qpos, _, _ = rollout_fn(state, _actions())
  # It stays put: no sinking into the table (too low) and no jump out of it (too high).
  np.testing.assert_allclose(qpos[-1, :, cube + 2], 0.02 * np.array(sizes), atol=1e-3)
  np.testing.assert_allclose(qpos[-1, :, cube:cube + 2], qpos[0, :, cube:cube + 2], atol=1e-3)


def test_lower_table_friction_lets_a_flicked_cube_slide_farther(env, reset_fn, rollout_fn):
  frictions = (0.2, 0.4, 0.9, 0.9)
  state = _reset(env, reset_fn, [dict(_nominal(env), table_friction=_point(mu))
                                 for mu in frictions])
  dof = int(env._object_dofs[0])  # pylint: disable=protected-access
  qvel = state.data.qvel.at[:, dof + 1].set(jnp.array([0.5, 0.5, 0.5, 0.0]))   # +y, 0.5 m/s
  state = state.replace(data=state.data.replace(qvel=qvel))
  _, qpos, _, _ = rollout_fn(state, _actions())
  start = np.asarray(state.data.qpos)[:, env._cube_qpos + 1]  # pylint: disable=protected-access
  slid = qpos[-1, :, env._cube_qpos + 1] - start  # pylint: disable=protected-access
  # Coulomb: v^2 / (2 mu g) = 6.4 cm, 3.2 cm, 1.4 cm; the cube given no velocity stays.
  assert slid[0] > slid[1] + 0.01 > slid[2] + 0.02, slid
  np.testing.assert_allclose(slid[:3], 0.25 / (2 * 9.81 * np.array(frictions[:3])), rtol=0.35)
  assert abs(slid[3]) < 1e-3


def _grasped(env, state):
  """`state` (batched) with the cube between the pads, aligned with the hand, fingers closed on
  it (0.5 mm squeeze) and the gripper commanded closed."""
  m = env.mj_model
  pads = [m.geom("pad_left").id, m.geom("pad_right").id]
  centre = jnp.mean(state.data.geom_xpos[:, pads], axis=1)           # [B, 3]
  quat = state.data.xquat[:, m.body("hand").id]                      # [B, 4]
  adr_ = env._cube_qpos  # pylint: disable=protected-access
  qpos = state.data.qpos.at[:, adr_:adr_ + 3].set(centre).at[:, adr_ + 3:adr_ + 7].set(quat)
  qpos = qpos.at[:, env._finger_qpos].set(arm.CUBE_HALF - 0.0005)  # pylint: disable=protected-access
  ctrl = state.data.ctrl.at[:, FINGERS].set(0.0)
  info = dict(state.info, ctrl=ctrl,
              ctrl_history=state.info["ctrl_history"].at[:, :, FINGERS].set(0.0))
  return state.replace(data=state.data.replace(qpos=qpos, ctrl=ctrl), info=info)


def test_heavier_cube_or_weaker_gripper_slips_from_the_grasp(env, reset_fn, rollout_fn):
  weak = jnp.stack([jnp.r_[jnp.ones(7), jnp.full(2, 0.02)]] * 2)      # [2, nu]: fingers 2 % Kp
  per_env = [_nominal(env), dict(_nominal(env), object_mass_scale=_point(30.0)),
             dict(_nominal(env), kp_scale=weak), dict(_nominal(env), object_friction=_point(1.5))]
  state = _grasped(env, _reset(env, reset_fn, per_env))
  start_z = np.asarray(state.data.qpos)[:, env._cube_qpos + 2]  # pylint: disable=protected-access
  _, qpos, _, _ = rollout_fn(state, _actions(arm_action=(0.0, 0.0, 0.5), gripper=-1.0))
  lifted = qpos[-1, :, env._cube_qpos + 2] - start_z  # pylint: disable=protected-access
  # The hand rises 40 x 5 mm: the nominal and the grippier cube go with it, the 3 kg cube and the
  # cube in the weak gripper drop out.
  assert lifted[0] > 0.12 and lifted[3] > 0.12, lifted
  assert lifted[1] < 0.0 and lifted[2] < 0.0, lifted


def test_lower_object_friction_lets_the_grasped_cube_slip(env, reset_fn, rollout_fn):
  frictions = (1.0, 0.3, 0.1, 0.03)   # cube-pad / cube-hand sliding coefficient, nominal 1.0
  per_env = [dict(_nominal(env), object_friction=_point(mu)) for mu in frictions]
  state = _grasped(env, _reset(env, reset_fn, per_env))
  start_z = np.asarray(state.data.qpos)[:, env._cube_qpos + 2]  # pylint: disable=protected-access
  _, qpos, _, _ = rollout_fn(state, _actions(arm_action=(0.0, 0.0, 0.5), gripper=-1.0))
  lifted = qpos[-1, :, env._cube_qpos + 2] - start_z  # pylint: disable=protected-access
  # The same grip and lift as above (measured 2026-12-03: +0.17, -0.09, -0.46, -0.46 m): the
  # nominal cube rises with the hand; at 0.3 it creeps down the pads and falls out late in the
  # lift; at 0.1 and 0.03 it never rises with the hand and ends on the table (0.455 m below).
  assert lifted[0] > 0.12, lifted
  assert lifted[1] < lifted[0] - 0.05, lifted
  assert lifted[2] < -0.3 and lifted[3] < -0.3, lifted


def test_latency_delays_the_applied_control_by_k_steps(env, reset_fn, rollout_fn):
  state = _reset(env, reset_fn, [dict(_nominal(env), action_latency=_point(k)) for k in range(B)])
  assert np.asarray(state.info["dr"]["action_latency"]).tolist() == list(range(B))
  switch = 5
  actions = _actions().at[switch:, :, -1].set(-1.0)                  # close the gripper at step 5
  ctrl, qpos, _, _ = rollout_fn(state, actions)
  steps = np.arange(T)[:, None]
  expected = np.where(steps < switch + np.arange(B)[None], arm.FINGER_OPEN, 0.0)   # [T, B]
  np.testing.assert_array_equal(ctrl[:, :, 7], expected.astype(np.float32))
  fingers = qpos[:, :, env._finger_qpos[0]]  # pylint: disable=protected-access
  for k in range(1, B):   # the fingers move as env 0's did, k steps later
    np.testing.assert_allclose(fingers[k:, k], fingers[:T - k, 0], atol=5e-4)
    assert fingers[switch + k, k] > fingers[switch + k, 0] + 1e-3


def test_joint_noise_changes_the_observation_only(env, reset_fn, rollout_fn):
  noise = (0.0, 0.05, 0.0, 0.05)
  state = _reset(env, reset_fn, [dict(_nominal(env), joint_pos_noise=_point(s)) for s in noise])
  _, qpos, obs, privileged = rollout_fn(state, _actions(arm_action=(0.3, 0.0, -0.2)))
  np.testing.assert_array_equal(qpos[:, 1], qpos[:, 0])               # physics untouched
  np.testing.assert_array_equal(privileged[:, 1], privileged[:, 0])   # the critic's view is clean
  np.testing.assert_array_equal(obs[:, 1, 7:], obs[:, 0, 7:])        # only the joint angles
  error = obs[:, 1, :7] - obs[:, 0, :7]
  assert 0.04 < error.std() < 0.06, error.std()
  np.testing.assert_allclose(obs[:, 0, :7], qpos[:, 0, :7], atol=1e-6)   # noise 0: exact angles


# -- visual DR -------------------------------------------------------------------------------------

def test_visual_overrides_have_the_renderer_shapes_and_vary(env):
  m = env.mj_model
  fields = env.visual_overrides(jax.random.split(jax.random.PRNGKey(0), 3))
  names = {"cam_pos", "cam_quat", "light_pos", "light_diffuse", "geom_rgba", "mat_rgba"}
  assert names <= set(fields)
  for name, value in fields.items():
    assert value.shape == (3,) + getattr(m, name).shape, name
  rgba = np.asarray(fields["geom_rgba"])
  cube, table = m.geom("cube").id, m.geom("table").id
  ratio = rgba[:, cube, :3] / m.geom_rgba[cube, :3]
  assert np.all((ratio > 0.84) & (ratio < 1.16)) and not np.allclose(ratio, 1.0)
  others = np.setdiff1d(np.arange(m.ngeom), [cube, table])
  nominal = np.broadcast_to(m.geom_rgba[others], (3, len(others), 4))
  np.testing.assert_allclose(rgba[:, others], nominal, rtol=1e-6)
  mat = np.asarray(fields["mat_rgba"])[:, m.geom_matid[table]]
  assert len(np.unique(mat[:, 0])) == 3                               # per-env table colours
  assert len(np.unique(np.asarray(fields["cam_pos"])[:, 0, 0])) == 3
  single = env.visual_overrides(jax.random.PRNGKey(0))
  assert single["geom_rgba"].shape == m.geom_rgba.shape


# -- protocol and bad input ----------------------------------------------------------------------

def test_protocol_adr_and_wrappers_see_the_arm_dr(env):
  assert base.supports_dr(env) and base.dr_enabled(env)
  assert not base.supports_dr(envs.make("cartpole"))
  assert not base.dr_enabled(envs.make("arm_reach", **{"randomization.enabled": False}))
  wrapped = wrappers.VmapWrapper(wrappers.EpisodeWrapper(env, 10))
  assert base.supports_dr(wrapped)
  cfg = adr.default_config()
  cfg.enabled, cfg.performance_metric = True, "reward/success"
  cfg.bounds = {"table_friction": (0.1, 1.5)}
  cfg.steps = {"table_friction": 0.05}
  state = adr.initial_state(cfg, env)
  assert set(adr.ranges(state)) == set(arm_dr.FIELDS)
  with pytest.raises(ValueError, match="no domain randomization"):
    adr.initial_state(cfg, envs.make("cartpole"))


def test_arm_adr_widens_from_nominal_through_the_config_ranges_to_its_bounds(env):
  """The arm's own ADR bounds / steps (`arm_dr.default_adr_config`): from the nominal ranges one
  successful update widens every field, the next resets draw inside, and enough of them reach the
  bounds, which contain the config's ranges."""
  limits = type(env).default_adr_config()
  assert set(limits.bounds) == set(limits.steps) == set(arm_dr.FIELDS)
  assert envs.default_adr_config("arm_pick_cube").to_dict() == limits.to_dict()
  cfg = adr.default_config()
  cfg.update(dict(enabled=True, performance_metric="success", initial_ranges="nominal"))
  state = adr.initial_state(cfg, env)
  jax.tree.map(np.testing.assert_array_equal, adr.ranges(state), env.nominal_dr_ranges())
  # A batch of 2 env states as far as ADR sees them (their ranges; no physics run here).
  env_state = base.State(data=None, obs={}, reward=jnp.zeros(2), done=jnp.zeros(2), metrics={},
                         info={"dr_ranges": jax.tree.map(lambda r: jnp.stack([r, r]),
                                                         env.default_dr_ranges())})
  state, env_state = jax.jit(adr.advance, static_argnums=3)(
      state, env_state, {"success": jnp.full((4, 2), 0.75)}, "success")
  widened = adr.ranges(state)
  for field, nominal in env.nominal_dr_ranges().items():
    step = limits.steps[field]
    np.testing.assert_allclose(widened[field], [max(nominal[0] - step, limits.bounds[field][0]),
                                                nominal[1] + step], rtol=1e-5, err_msg=field)
    np.testing.assert_allclose(env_state.info["dr_ranges"][field][1], widened[field], rtol=1e-6)
  draws = arm_dr.sample(jax.random.PRNGKey(0), widened, env.dr_targets)
  assert 0.95 - 1e-6 <= float(draws["object_mass_scale"][0]) <= 1.05 + 1e-6
  assert int(draws["action_latency"]) in (0, 1)
  for _ in range(100):
    state = adr.update(state, 1.0)
  config_ranges = env.default_dr_ranges()
  for field, (low, high) in limits.bounds.items():
    np.testing.assert_allclose(adr.ranges(state)[field], [low, high], rtol=1e-5, err_msg=field)
    assert low <= float(config_ranges[field][0]) and float(config_ranges[field][1]) <= high
  with pytest.raises(ValueError, match="brax_randomization_fn"):
    brax_adapter.randomization_fn(env)


def test_bad_input_names_the_field(env):
  with pytest.raises(KeyError, match="frction"):
    envs.make("arm_reach", **{"randomization.frction": (0.1, 0.2)})
  with pytest.raises(ValueError, match="table_friction: low 1.0 > high 0.5"):
    envs.make("arm_reach", **{"randomization.table_friction": (1.0, 0.5)})
  with pytest.raises(ValueError, match="action_latency"):
    envs.make("arm_pick_cube", **{"randomization.action_latency": (0.0, 5.0)})
  with pytest.raises(ValueError, match="object_size_scale"):
    envs.make("arm_pick_cube", **{"randomization.object_size_scale": (0.0, 1.0)})
  with pytest.raises(KeyError, match="frction"):
    env.reset(jax.random.PRNGKey(0), dict(env.default_dr_ranges(), frction=_point(1.0)))
  missing = dict(env.default_dr_ranges())
  del missing["kp_scale"]
  with pytest.raises(KeyError, match="kp_scale"):
    env.reset(jax.random.PRNGKey(0), missing)
  with pytest.raises(ValueError, match="object_friction"):
    env.reset(jax.random.PRNGKey(0), dict(env.default_dr_ranges(), object_friction=jnp.ones(3)))
