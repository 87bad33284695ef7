"""Domain randomization and ADR.

Physics effects: one batched rollout of `quadruped_joystick` (the jitted reset/step shared with
tests/test_envs_quadruped.py) where each group of envs has the nominal model except for one DR
field set to a low or a high value (degenerate ranges low == high), all from the same initial state.
Each test then compares groups: the field must change exactly the physics it should.
"""
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from vlajax import envs
from vlajax.envs import adr
from vlajax.envs import randomization as generic_dr
from vlajax.envs.locomotion import randomization as dr_lib
from vlajax.envs.locomotion import quadruped_joystick as qj

from test_envs_quadruped import BATCH, batched_ranges, compiled

SETTLE = 15   # control steps before t = 0 (the push group is kicked during these too)
STEPS = 12
KNEES = np.array([2, 5, 8, 11])

# group name -> (field overrides as degenerate ranges, action kind, initial forward velocity)
GROUPS = {
    "base": ({}, "zero", 0.0),
    "slide_low_friction": ({"floor_friction": 0.1}, "zero", 1.5),
    "slide_high_friction": ({"floor_friction": 1.5}, "zero", 1.5),
    "light": ({"link_mass_scale": 0.7}, "zero", 0.0),
    "heavy": ({"link_mass_scale": 1.4}, "zero", 0.0),
    "torso_plus_3kg": ({"torso_mass_offset": 3.0}, "zero", 0.0),
    "com_plus": ({"torso_com_offset": 0.05}, "zero", 0.0),
    "com_minus": ({"torso_com_offset": -0.05}, "zero", 0.0),
    "kp_low": ({"kp_scale": 0.5}, "zero", 0.0),
    "kp_high": ({"kp_scale": 2.0}, "zero", 0.0),
    "knee_step": ({}, "knee_step", 0.0),
    "knee_step_damping_high": ({"joint_damping_scale": 10.0}, "knee_step", 0.0),
    "knee_step_armature_high": ({"armature_scale": 50.0}, "knee_step", 0.0),
    "knee_small": ({}, "knee_small", 0.0),
    "knee_small_frictionloss_high": ({"frictionloss_scale": 25.0}, "knee_small", 0.0),
    "impulse_latency0": ({"action_latency": 0.0}, "impulse", 0.0),
    "impulse_latency1": ({"action_latency": 1.0}, "impulse", 0.0),
    "impulse_latency2": ({"action_latency": 2.0}, "impulse", 0.0),
    "impulse_latency3": ({"action_latency": 3.0}, "impulse", 0.0),
    "obs_noise": ({"joint_pos_noise": 0.05}, "zero", 0.0),
    "push": ({"push_velocity": 1.0, "push_interval": 0.02}, "zero", 0.0),
}
NAMES = list(GROUPS)


def _actions(kind: str, t: int) -> np.ndarray:
  a = np.zeros(12, np.float32)
  if kind == "knee_step":
    a[KNEES] = 0.8             # knee target +0.4 rad (legs extend)
  elif kind == "knee_small":
    a[KNEES] = 0.4             # knee target +0.2 rad: 7 N m of PD force at the start
  elif kind == "impulse" and t == 0:
    a[:] = 1.0
  return a


@pytest.fixture(scope="module")
def scenario():
  """Runs every group for STEPS control steps. Returns (env, {group: trajectory of states})."""
  env, reset, step = compiled()
  nominal = dr_lib.nominal_ranges(env.targets)
  per_env = []
  for name in NAMES:
    ranges = dict(nominal)
    for field, value in GROUPS[name][0].items():
      ranges[field] = jnp.array([value, value], jnp.float32)
    per_env.append(ranges)
  per_env += [nominal] * (BATCH - len(NAMES))
  ranges = jax.tree.map(lambda *xs: jnp.stack(xs), *per_env)
  keys = jnp.broadcast_to(jax.random.PRNGKey(7), (BATCH, 2))   # identical initial states
  state = reset(keys, ranges)
  # Start at rest, facing +x, let every robot settle on its feet, then shove the sliding groups
  # forward.
  qpos = state.data.qpos.at[:, 3:7].set(jnp.array([1.0, 0.0, 0.0, 0.0]))
  state = state.replace(data=state.data.replace(qpos=qpos, qvel=jnp.zeros_like(state.data.qvel)))
  for _ in range(SETTLE):
    state = step(state, jnp.zeros((BATCH, 12)))
  vx = np.zeros(BATCH, np.float32)
  vx[:len(NAMES)] = [GROUPS[n][2] for n in NAMES]
  qvel = state.data.qvel.at[:, 0].add(jnp.asarray(vx))
  state = state.replace(data=state.data.replace(qvel=qvel))
  traj = [state]
  for t in range(STEPS):
    actions = np.zeros((BATCH, 12), np.float32)
    for i, name in enumerate(NAMES):
      actions[i] = _actions(GROUPS[name][1], t)
    state = step(state, jnp.asarray(actions))
    traj.append(state)
  host = jax.device_get(traj)
  groups = {name: [jax.tree.map(lambda x, i=i: x[i], s) for s in host] for i, name in enumerate(NAMES)}
  return env, groups


def _final(groups, name):
  return groups[name][-1]


def test_draws_reach_the_state(scenario):
  _, g = scenario
  assert float(_final(g, "slide_low_friction").info["dr"]["floor_friction"]) == pytest.approx(0.1)
  np.testing.assert_allclose(_final(g, "heavy").info["dr"]["link_mass_scale"], 1.4)
  assert int(_final(g, "impulse_latency3").info["dr"]["action_latency"]) == 3
  np.testing.assert_allclose(_final(g, "base").info["dr"]["kp_scale"], 1.0)


def test_higher_floor_friction_reduces_sliding(scenario):
  env, g = scenario
  names = ("slide_low_friction", "slide_high_friction")
  # Both were shoved forward by 1.5 m/s; the low-friction floor brakes the robot far less...
  speed = {n: float(_final(g, n).data.qvel[0]) for n in names}
  assert speed["slide_low_friction"] > speed["slide_high_friction"] + 0.3, speed
  travel = {n: float(_final(g, n).data.qpos[0] - g[n][0].data.qpos[0]) for n in names}
  assert travel["slide_low_friction"] > travel["slide_high_friction"] + 0.05, travel
  # ...and its feet slide along the floor instead of sticking.
  feet = [env.mj_model.geom(f).id for f in qj.FEET]
  slide = {n: float(np.linalg.norm(_final(g, n).data.geom_xpos[feet, :2]
                                   - g[n][0].data.geom_xpos[feet, :2], axis=-1).mean()) for n in names}
  assert slide["slide_low_friction"] > 2.0 * slide["slide_high_friction"] + 0.05, slide


def test_heavier_links_and_torso_sag_more(scenario):
  _, g = scenario
  z = {n: float(_final(g, n).data.qpos[2]) for n in ("light", "base", "heavy", "torso_plus_3kg")}
  assert z["heavy"] < z["base"] - 0.003 < z["light"] - 0.006, z
  assert z["torso_plus_3kg"] < z["base"] - 0.003, z


def test_torso_com_offset_tilts_the_trunk(scenario):
  _, g = scenario
  def gravity_x(name):   # projected gravity in the body frame, x component: pitch
    return float(_final(g, name).obs["privileged_state"][6])
  plus = gravity_x("com_plus") - gravity_x("base")
  minus = gravity_x("com_minus") - gravity_x("base")
  assert abs(plus) > 0.005 and abs(minus) > 0.005, (plus, minus)
  assert np.sign(plus) == -np.sign(minus)


def test_kp_scale_changes_tracking_stiffness(scenario):
  env, g = scenario
  def pose_error(name):
    return float(np.abs(_final(g, name).data.qpos[7:] - np.asarray(env._default_pose)).sum())
  assert pose_error("kp_low") > 1.5 * pose_error("base") > 1.5 * 1.5 * pose_error("kp_high")
  # And the model seen by the step has the scaled gains.
  draws = _final(g, "kp_low").info["dr"]
  model = dr_lib.apply(env.mjx_model, draws, env.targets)
  np.testing.assert_allclose(model.actuator_gainprm[:, 0], 17.5)
  np.testing.assert_allclose(model.actuator_biasprm[:, 1], -17.5)
  np.testing.assert_allclose(model.actuator_biasprm[:, 2], -0.5)


def _knee_travel(g, name):
  """Mean knee rotation during the first two control steps."""
  traj = g[name]
  return float(np.abs(traj[2].data.qpos[7 + KNEES] - traj[0].data.qpos[7 + KNEES]).mean())


def test_damping_armature_frictionloss_slow_the_joints(scenario):
  _, g = scenario
  free = _knee_travel(g, "knee_step")
  assert free > 0.05
  assert _knee_travel(g, "knee_step_damping_high") < 0.7 * free
  assert _knee_travel(g, "knee_step_armature_high") < 0.5 * free
  small = _knee_travel(g, "knee_small")
  assert small > 0.02
  assert _knee_travel(g, "knee_small_frictionloss_high") < 0.4 * small


def test_latency_delays_the_action_by_exactly_k_steps(scenario):
  _, g = scenario
  base = g["base"]   # zero actions throughout; latency is irrelevant to it
  for k in range(4):
    traj = g[f"impulse_latency{k}"]
    # States s_1..s_k equal the no-action run; s_{k+1} (after the step that applies a_0) differs.
    for t in range(1, k + 1):
      np.testing.assert_allclose(traj[t].data.qpos, base[t].data.qpos, atol=1e-6,
                                 err_msg=f"latency {k}: moved early at step {t}")
    moved = np.abs(traj[k + 1].data.qpos - base[k + 1].data.qpos).max()
    assert moved > 1e-3, f"latency {k}: no effect at step {k + 1}"
    # The motors saw the impulse exactly once, at step k.
    ctrl_dev = [np.abs(traj[t].data.ctrl - base[t].data.ctrl).max() for t in range(1, STEPS + 1)]
    assert [d > 0.1 for d in ctrl_dev] == [t == k + 1 for t in range(1, STEPS + 1)]


def test_observation_noise_changes_observations_only(scenario):
  _, g = scenario
  for t in range(1, STEPS + 1):
    noisy, base = g["obs_noise"][t], g["base"][t]
    np.testing.assert_array_equal(noisy.data.qpos, base.data.qpos)
    np.testing.assert_array_equal(noisy.obs["privileged_state"][:48], base.obs["privileged_state"][:48])
    diff = np.abs(noisy.obs["state"] - base.obs["state"])
    assert diff[9:21].max() > 0.01                        # joint angles: N(0, 0.05) noise
    np.testing.assert_array_equal(diff[:9], 0.0)
    np.testing.assert_array_equal(diff[21:], 0.0)


def test_pushes_kick_the_trunk(scenario):
  _, g = scenario
  # Interval 0.02 s = one control step: every step adds a 1 m/s kick in a random direction.
  for t in range(1, 5):
    dv_push = g["push"][t].data.qvel[:2] - g["push"][t - 1].data.qvel[:2]
    dv_base = g["base"][t].data.qvel[:2] - g["base"][t - 1].data.qvel[:2]
    assert 0.5 < np.linalg.norm(dv_push - dv_base) < 1.5, t
    assert int(g["push"][t].info["push_countdown"]) == 1
  # Default interval (10-15 s): no kick within the rollout, the countdown just runs down.
  countdown = [int(s.info["push_countdown"]) for s in g["base"]]
  assert countdown == list(range(countdown[0], countdown[0] - STEPS - 1, -1))
  assert 500 - SETTLE <= countdown[0] <= 750 - SETTLE


# -- draws: distinct per env, per reset, per device ------------------------------------------------

CONTINUOUS = ("floor_friction", "link_mass_scale", "torso_mass_offset", "torso_com_offset",
              "joint_damping_scale", "armature_scale", "frictionloss_scale", "kp_scale",
              "joint_pos_noise")


def _assert_all_distinct(draws, n):
  for field in CONTINUOUS:
    flat = np.asarray(draws[field]).reshape(n, -1)
    assert len({row.tobytes() for row in flat}) == n, field
  assert len(np.unique(np.asarray(draws["action_latency"]))) > 1


def test_draws_differ_across_envs_and_resets_and_stay_in_range():
  env, reset, _ = compiled()
  ranges = batched_ranges(env.default_dr_ranges())
  first = reset(jax.random.split(jax.random.PRNGKey(0), BATCH), ranges)
  again = reset(jax.random.split(jax.random.PRNGKey(1), BATCH), ranges)
  _assert_all_distinct(first.info["dr"], BATCH)
  for field in CONTINUOUS:
    a, b = np.asarray(first.info["dr"][field]), np.asarray(again.info["dr"][field])
    assert not np.any(np.all((a == b).reshape(BATCH, -1), axis=-1)), field
  defaults = env.default_dr_ranges()
  for field in CONTINUOUS + ("action_latency",):
    x = np.asarray(first.info["dr"][field])
    low, high = np.asarray(defaults[field])
    assert x.min() >= low and x.max() <= high, field
  lat = np.asarray(first.info["dr"]["action_latency"])
  assert set(np.unique(lat)) == {0, 1, 2, 3}
  np.testing.assert_array_equal(first.info["dr_ranges"]["floor_friction"],
                                np.broadcast_to(defaults["floor_friction"], (BATCH, 2)))


def test_draws_differ_across_devices():
  assert jax.device_count() >= 4
  env, reset, _ = compiled()   # shards the batch of keys over 4 devices
  state = reset(jax.random.split(jax.random.PRNGKey(3), BATCH),
                batched_ranges(env.default_dr_ranges()))
  friction = state.info["dr"]["floor_friction"]
  shards = friction.addressable_shards
  assert len({s.device for s in shards}) == 4
  per_device = [np.asarray(s.data) for s in shards]
  assert all(p.shape == (BATCH // 4,) for p in per_device)
  for i in range(4):
    for j in range(i + 1, 4):
      assert not np.any(np.isin(per_device[i], per_device[j]))
  _assert_all_distinct(jax.device_get(state.info["dr"]), BATCH)


# -- the model update ------------------------------------------------------------------------------

def test_apply_touches_only_randomized_fields():
  env = envs.make("quadruped_joystick")
  model, t = env.mjx_model, env.targets
  same = dr_lib.apply(model, dr_lib.nominal_draws(t), t)
  for name in dr_lib.MODEL_FIELDS:   # nominal draws reproduce the model (nothing stale written)
    np.testing.assert_allclose(getattr(same, name), getattr(model, name), rtol=1e-5, atol=1e-7,
                               err_msg=name)
  draws = dr_lib.sample(jax.random.PRNGKey(0), env.default_dr_ranges(), t)
  changed = dr_lib.apply(model, draws, t)
  for field in model.fields():
    if field.name not in dr_lib.MODEL_FIELDS:
      assert getattr(changed, field.name) is getattr(model, field.name), field.name
  assert not np.allclose(changed.body_mass, model.body_mass)
  assert float(changed.geom_friction[t.floor_geom, 0]) == pytest.approx(float(draws["floor_friction"]))
  np.testing.assert_allclose(changed.geom_friction[t.floor_geom + 1:], model.geom_friction[t.floor_geom + 1:])


def test_brax_randomization_fn_batches_only_randomized_fields():
  env = envs.make("quadruped_joystick")
  fn = env.brax_randomization_fn()   # = dr_lib.brax_randomization_fn(env.targets, ranges)
  sys_b, in_axes = jax.jit(fn)(env.mjx_model, jax.random.split(jax.random.PRNGKey(0), 8))
  for field in env.mjx_model.fields():
    axis = getattr(in_axes, field.name)
    value, orig = getattr(sys_b, field.name), getattr(env.mjx_model, field.name)
    if field.name in dr_lib.MODEL_FIELDS:
      assert axis == 0 and value.shape == (8,) + orig.shape, field.name
    elif isinstance(orig, jax.Array):
      assert axis is None and value.shape == orig.shape, field.name
      np.testing.assert_array_equal(value, orig, err_msg=field.name)
  assert len(np.unique(np.asarray(sys_b.body_mass[:, env.targets.torso_body]))) == 8


def _set_const(mj_model, mass, inertia, armature):
  """MuJoCo's own derived constants for the model with these masses, inertias and armatures."""
  m = mujoco.MjModel.from_xml_path(str(envs.assets.path("quadruped")))
  m.body_mass[:] = mass
  m.body_inertia[:] = inertia
  m.dof_armature[:] = armature
  mujoco.mj_setConst(m, mujoco.MjData(m))
  return m


def test_mass_derived_quantities_stay_consistent():
  env = envs.make("quadruped_joystick")
  model, t = env.mjx_model, env.targets
  base = dict(dr_lib.nominal_draws(t))
  # Masses and armatures scaled together: MuJoCo's own recomputation (mj_setConst) agrees.
  uniform = dict(base, link_mass_scale=jnp.full((t.num_bodies,), 1.3),
                 armature_scale=jnp.full((t.num_joints,), 1.3))
  got = dr_lib.apply(model, uniform, t)
  ref = _set_const(env.mj_model, np.asarray(got.body_mass), np.asarray(got.body_inertia),
                   np.asarray(got.dof_armature))
  np.testing.assert_allclose(got.body_subtreemass, ref.body_subtreemass, rtol=1e-5)
  np.testing.assert_allclose(got.body_invweight0, ref.body_invweight0, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(got.dof_invweight0, ref.dof_invweight0, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(got.body_inertia, 1.3 * np.asarray(model.body_inertia), rtol=1e-6)
  # Per-link draws plus a torso offset: subtree masses exact; inverse weights (a first-order update)
  # within 20% of MuJoCo's recomputation and closer to it than the stale nominal values.
  draws = dr_lib.sample(jax.random.PRNGKey(5), dict(env.default_dr_ranges(),
                                                   link_mass_scale=jnp.array([0.7, 1.3]),
                                                   torso_mass_offset=jnp.array([-1.0, 1.0])), t)
  got = dr_lib.apply(model, draws, t)
  ref = _set_const(env.mj_model, np.asarray(got.body_mass), np.asarray(got.body_inertia),
                   np.asarray(got.dof_armature))
  np.testing.assert_allclose(got.body_subtreemass, ref.body_subtreemass, rtol=1e-5)
  for name in ("body_invweight0", "dof_invweight0"):
    want = getattr(ref, name)
    ours = np.abs(np.asarray(getattr(got, name)) - want)
    stale = np.abs(np.asarray(getattr(model, name)) - want)
    assert ours.sum() < 0.85 * stale.sum(), (name, ours.sum(), stale.sum())
    assert np.max(ours / np.maximum(want, 1e-9)) < 0.2, name


def test_camera_and_light_perturbation():
  env = envs.make("quadruped_joystick")
  model = env.mjx_model
  assert model.cam_pos.shape[0] == 2 and model.light_pos.shape[0] == 1
  out = jax.jit(jax.vmap(lambda k: generic_dr.camera_light_fields(model, k)))(
      jax.random.split(jax.random.PRNGKey(0), 16))
  dpos = np.asarray(out["cam_pos"] - model.cam_pos)
  assert np.abs(dpos).max() <= 0.03 + 1e-6 and np.abs(dpos).max() > 0.01
  assert len(np.unique(dpos[:, 0, 0])) == 16
  np.testing.assert_allclose(np.linalg.norm(out["cam_quat"], axis=-1), 1.0, rtol=1e-5)
  # Rotation from nominal: at most 5 deg per axis, so at most 5*sqrt(3) deg overall; non-zero.
  dots = np.abs(np.sum(np.asarray(out["cam_quat"]) * np.asarray(model.cam_quat), axis=-1))
  angles = np.degrees(2 * np.arccos(np.clip(dots, 0, 1)))
  assert angles.max() <= 5 * np.sqrt(3) + 1e-3 and angles.min() > 0.01
  ratio = np.asarray(out["light_diffuse"]) / np.asarray(model.light_diffuse)
  assert ratio.min() >= 0.6 * 0.9 - 1e-6 and ratio.max() <= 1.4 * 1.1 + 1e-6 and ratio.std() > 0.01
  perturbed = generic_dr.perturb_camera_and_lights(model, jax.random.PRNGKey(1))
  assert perturbed.body_mass is model.body_mass
  assert not np.allclose(perturbed.cam_pos, model.cam_pos)


# -- ADR -------------------------------------------------------------------------------------------

def _adr_state():
  initial = {"floor_friction": jnp.array([0.7, 0.7]), "kp_scale": jnp.array([0.9, 1.1]),
             "push_interval": jnp.array([10.0, 15.0])}
  return adr.init(initial, bounds={"floor_friction": (0.3, 1.0), "kp_scale": (0.5, 1.5)},
                  steps={"floor_friction": 0.1, "kp_scale": 0.2}, low_threshold=0.3,
                  high_threshold=0.8)


def test_adr_widens_on_success_and_clamps_to_bounds():
  state = _adr_state()
  update = jax.jit(adr.update)
  state = update(state, 0.9)
  r = adr.ranges(state)
  np.testing.assert_allclose(r["floor_friction"], [0.6, 0.8], rtol=1e-6)
  np.testing.assert_allclose(r["kp_scale"], [0.7, 1.3], rtol=1e-6)
  np.testing.assert_allclose(r["push_interval"], [10.0, 15.0])   # no bounds: fixed
  for _ in range(10):
    state = update(state, 0.8)   # threshold is inclusive
  r = adr.ranges(state)
  np.testing.assert_allclose(r["floor_friction"], [0.3, 1.0], rtol=1e-6)
  np.testing.assert_allclose(r["kp_scale"], [0.5, 1.5], rtol=1e-6)
  assert int(state.num_widened) == 11


def test_adr_shrinks_on_failure_but_never_below_nominal_and_holds_in_between():
  state = _adr_state()
  for _ in range(3):
    state = adr.update(state, 0.9)
  held = adr.update(state, 0.5)    # between thresholds: unchanged
  jax.tree.map(np.testing.assert_array_equal, adr.ranges(held), adr.ranges(state))
  state = adr.update(state, 0.1)
  np.testing.assert_allclose(adr.ranges(state)["kp_scale"], [0.5 + 0.2, 1.5 - 0.2], rtol=1e-6)
  for _ in range(10):
    state = adr.update(state, 0.0)
  r = adr.ranges(state)
  np.testing.assert_allclose(r["floor_friction"], [0.7, 0.7], rtol=1e-6)   # nominal point
  np.testing.assert_allclose(r["kp_scale"], [0.9, 1.1], rtol=1e-6)         # initial = nominal
  assert int(state.num_shrunk) == 11


def test_adr_metrics_and_writing_ranges_into_env_state():
  env, reset, _ = compiled()
  state = _adr_state()
  metrics = adr.as_metrics(adr.update(state, 1.0))
  assert metrics["dr/floor_friction/low"] == pytest.approx(0.6)
  assert metrics["dr/kp_scale/high"] == pytest.approx(1.3)
  assert set(metrics) == {f"dr/{f}/{e}" for f in ("floor_friction", "kp_scale", "push_interval")
                          for e in ("low", "high")}
  # The env's ADR bounds contain its default ranges (how the PPO learner starts ADR).
  assert env.default_adr_config().to_dict() == dr_lib.default_adr_config().to_dict()
  from_defaults = adr.update(adr.for_env(adr.default_config(), env), 1.0)
  np.testing.assert_allclose(adr.ranges(from_defaults)["floor_friction"], [0.35, 1.05], rtol=1e-6)
  np.testing.assert_allclose(adr.ranges(from_defaults)["action_latency"], [0.0, 3.0])
  # A config section's bounds / steps override the env's field by field.
  cfg = adr.default_config()
  cfg.steps = {"floor_friction": 0.1}
  overridden = adr.ranges(adr.update(adr.for_env(cfg, env), 1.0))
  np.testing.assert_allclose(overridden["floor_friction"], [0.3, 1.1], rtol=1e-6)
  np.testing.assert_allclose(overridden["kp_scale"], [0.68, 1.32], rtol=1e-6)
  # Full-field ADR from the nominal ranges; the new ranges land in every env and drive the next reset.
  cfg = adr.default_config()
  cfg.initial_ranges = "nominal"
  full = adr.for_env(cfg, env)
  jax.tree.map(np.testing.assert_array_equal, adr.ranges(full), env.nominal_dr_ranges())
  for _ in range(3):
    full = adr.update(full, 1.0)
  ranges = batched_ranges(env.default_dr_ranges())
  env_state = reset(jax.random.split(jax.random.PRNGKey(0), BATCH), ranges)
  env_state = adr.with_ranges(env_state, full)
  np.testing.assert_allclose(env_state.info["dr_ranges"]["kp_scale"][5], [0.94, 1.06], rtol=1e-5)
  fresh = reset(jax.random.split(jax.random.PRNGKey(1), BATCH), env_state.info["dr_ranges"])
  kp = np.asarray(fresh.info["dr"]["kp_scale"])
  assert kp.min() >= 0.94 - 1e-6 and kp.max() <= 1.06 + 1e-6 and kp.std() > 0.01
  lat = np.asarray(fresh.info["dr"]["action_latency"])
  assert set(np.unique(lat)) <= {0, 1, 2, 3} and lat.max() >= 2


def test_adr_bad_input_names_the_field():
  initial = {"kp_scale": jnp.array([0.9, 1.1])}
  with pytest.raises(KeyError, match="frction"):
    adr.init(initial, bounds={"frction": (0, 1)}, steps={"frction": 0.1}, low_threshold=0.1,
             high_threshold=0.5)
  with pytest.raises(ValueError, match="kp_scale"):
    adr.init(initial, bounds={"kp_scale": (0.95, 1.5)}, steps={"kp_scale": 0.1},
             low_threshold=0.1, high_threshold=0.5)
  with pytest.raises(ValueError, match="threshold"):
    adr.init(initial, bounds={}, steps={}, low_threshold=0.9, high_threshold=0.5)
  cfg = adr.default_config()
  cfg.initial_ranges = "nomnal"
  with pytest.raises(ValueError, match="initial_ranges.*nomnal"):
    adr.for_env(cfg, compiled()[0])
