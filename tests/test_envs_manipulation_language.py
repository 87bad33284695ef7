"""`tabletop_language`: instructions drawn from the configured split, the scene laid out per
episode, each family's success predicate on constructed states, and the scripted expert closed loop
over fixed seeded initial states."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manipulation_testlib as lib
from vlajax import envs
from vlajax.envs.manipulation import arm
from vlajax.envs.manipulation import instructions as ins


@pytest.fixture(scope="module")
def env():
  return envs.make("tabletop_language", action_space="ee_delta")


def _reset(env, n, seed=0):
  return jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(seed), n))


def test_reset_draws_from_the_split_and_lays_out_the_scene(env):
  state = _reset(env, 64)
  ids = np.asarray(state.info["instruction"])
  assert set(ids.tolist()) <= set(ins.instruction_ids("train").tolist())
  assert len(set(ids.tolist())) > 20
  cubes = np.stack([np.asarray(jax.vmap(env.object_pos, (0, None))(state.data, i))
                    for i in range(4)], 1)                                   # [64, 4, 3]
  plates = np.asarray(state.info["plates"])                                  # [64, 2, 3]
  things = np.concatenate([cubes[..., :2], plates[..., :2]], 1)
  gaps = np.linalg.norm(things[:, :, None] - things[:, None], axis=-1) + 9 * np.eye(6)
  assert gaps.min() > 0.065        # one grid cell each (13 cm), jitter +-2 cm, DR offset +-1 cm
  # Resting on the table at the episode's DR half-size.
  np.testing.assert_allclose(cubes[..., 2],
                             arm.CUBE_HALF * np.asarray(state.info["dr"]["object_size_scale"]),
                             atol=1e-6)
  # The plates' mocap bodies are where info says; the target marker is invisible.
  np.testing.assert_allclose(np.asarray(state.data.mocap_pos)[:, 1:], plates, atol=1e-6)
  assert np.all(env.mj_model.geom_rgba[env.mj_model.geom("target").id] == 0)
  instructed = cubes[np.arange(64), np.asarray(state.info["object"])]
  np.testing.assert_allclose(np.asarray(state.info["start"]), instructed, atol=1e-6)
  assert state.obs["state"].shape == (64, 18 + 7 + 50)
  assert state.obs["privileged_state"].shape == (64, 18 + 7 + 50 + 12 + 24 + 3)
  heldout = _reset(envs.make("tabletop_language", split="heldout"), 32, seed=1)
  assert set(np.asarray(heldout.info["instruction"]).tolist()) <= set(
      ins.instruction_ids("heldout").tolist())


def _state_with_cube(env, state, index, xy, z=arm.CUBE_HALF, opening=arm.FINGER_OPEN):
  """One env's state with cube `index` moved to (`xy`, `z`) and the fingers apart by `2 x
  opening` (un-stepped: the predicates read positions)."""
  qpos = state.data.qpos
  start = int(env._object_qpos[index])  # pylint: disable=protected-access
  qpos = qpos.at[start:start + 3].set(jnp.array([xy[0], xy[1], z]))
  qpos = qpos.at[env._finger_qpos].set(opening)  # pylint: disable=protected-access
  return state.data.replace(qpos=qpos)


def _info_for(env, state, family, obj, goal):
  index = next(i for i, e in enumerate(ins.INSTRUCTIONS)
               if (e.family, e.object, e.goal) == (family, obj, goal))
  o = ins.OBJECTS.index(obj)
  info = dict(state.info, instruction=jnp.int32(index), family=jnp.int32(ins.FAMILIES.index(family)),
              object=jnp.int32(o), goal=jnp.int32(ins.GOALS[family].index(goal)))
  info["start"] = env.object_pos(state.data, o)
  return info, o


def test_family_predicates_on_constructed_states(env):
  state = jax.tree.map(lambda x: x[0], _reset(env, 1, seed=3))
  # place: on the named plate, released -> success; on the other plate or still gripped -> not.
  info, o = _info_for(env, state, "place", "blue", "white")
  white, purple = np.asarray(info["plates"])[:, :2]
  assert bool(env.success(_state_with_cube(env, state, o, white + 0.02), info))
  assert not bool(env.success(_state_with_cube(env, state, o, purple), info))
  assert not bool(env.success(_state_with_cube(env, state, o, white, opening=arm.CUBE_HALF), info))
  # push: 10 cm along the named direction -> success; 10 cm the other way or 6 cm -> not.
  info, o = _info_for(env, state, "push", "red", "left")
  start = np.asarray(info["start"])[:2]
  assert bool(env.success(_state_with_cube(env, state, o, start + [0.0, 0.11]), info))
  assert not bool(env.success(_state_with_cube(env, state, o, start + [0.0, -0.11]), info))
  assert not bool(env.success(_state_with_cube(env, state, o, start + [0.0, 0.06]), info))
  assert not bool(env.success(_state_with_cube(env, state, o, start + [0.0, 0.11], z=0.1), info))
  # pick: held up at the tool point -> success; on the table, or up but away from the gripper
  # (thrown) -> not.
  info, o = _info_for(env, state, "pick", "green", "")
  grip = np.asarray(env.grip_pos(state.data))
  held = _state_with_cube(env, state, o, grip[:2], z=float(grip[2]))
  assert float(grip[2]) > env.config.lift_height and bool(env.success(held, info))
  assert not bool(env.success(_state_with_cube(env, state, o, grip[:2]), info))
  assert not bool(env.success(_state_with_cube(env, state, o, grip[:2] + 0.1, z=0.1), info))


def test_expert_closed_loop():
  lib.check_rollout("tabletop_language", *lib.rollout("tabletop_language"))


def test_bad_input_names_the_problem():
  with pytest.raises(ValueError, match="instruction family \\['stack'\\]"):
    envs.make("tabletop_language", families=("pick", "stack"))
  with pytest.raises(ValueError, match="split 'val'"):
    envs.make("tabletop_language", split="val")
