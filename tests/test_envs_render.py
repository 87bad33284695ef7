"""Camera rendering (`vlajax.envs.render`, `vlajax.envs.camera_wrapper`) on the arm model.

States are built with `mjx.make_data` and edited field by field (no jitted MJX physics: it
compiles slowly on CPU), so these tests do not depend on the manipulation task envs. Rendering
runs headless through EGL: `MUJOCO_GL` must be set before mujoco is first imported.

These tests run in a fresh process (`tests/test_envs_render_isolated.py` starts it with
`VLAJAX_RENDER_TESTS=1`): inside a pytest-xdist worker that had already run other test files,
creating the first EGL context segfaulted (twice in the full suite, 2026-12-01; the file alone,
or after test_envs_warp.py, passes). The cause (found 2026-12-04): TensorFlow, which the data
tests import, and Mesa's llvmpipe cannot share a process; `import tensorflow` then a GL context
segfaults every time, in either order (`vlajax.imitation.collect.write` keeps TensorFlow in a child
process for the same reason). Run them directly with
`VLAJAX_RENDER_TESTS=1 python -m pytest -n 0 tests/test_envs_render.py`.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

# pylint: disable=wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mujoco import mjx

from vlajax.envs import assets, backend, randomization, render, wrappers
from vlajax.envs.base import State
from vlajax.envs.camera_wrapper import CameraWrapper
from vlajax.envs.manipulation import randomization as arm_dr

pytestmark = pytest.mark.skipif(os.environ.get("VLAJAX_RENDER_TESTS") != "1",
                                reason="run in a fresh process by test_envs_render_isolated.py")

SIZE = (48, 40)   # (height, width): not square, so a swapped axis shows


@pytest.fixture(scope="module")
def mj_model():
  return assets.load("arm_7dof")


@pytest.fixture(scope="module")
def renderer(mj_model):
  with render.BatchRenderer(mj_model, cameras=("primary", "wrist"), size=SIZE,
                            shadow_size=512) as r:
    yield r


@pytest.fixture(scope="module")
def data(mj_model):
  """One env at the home keyframe (mjx.Data, unbatched)."""
  d = mjx.make_data(mjx.put_model(mj_model))
  key = mj_model.key("home")
  return d.replace(qpos=jnp.asarray(key.qpos), mocap_pos=jnp.asarray(key.mpos)[None],
                   mocap_quat=jnp.asarray(key.mquat)[None])


def _batch(d, size):
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (size,) + x.shape), d)


def _move_cube(mj_model, d, dy):
  adr = mj_model.joint("cube").qposadr[0]
  return d.replace(qpos=d.qpos.at[..., adr + 1].add(dy))


def test_shapes_batched_and_unbatched(renderer, data):
  single = renderer.render(data)
  assert set(single) == {"primary", "wrist"}
  for image in single.values():
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == (*SIZE, 3)
  batched = renderer.render(_batch(data, 3), size=32)
  for camera, image in batched.items():
    assert image.dtype == np.uint8 and image.shape == (3, 32, 32, 3)
    assert image.std() > 1.0, f"{camera} image is flat"
    np.testing.assert_array_equal(image[0], image[2])
  # A State works as well as its data; cameras can be chosen per call.
  state = State(data=_batch(data, 2), obs={}, reward=jnp.zeros(2), done=jnp.zeros(2),
                metrics={}, info={})
  wrist = renderer.render(state, cameras=["wrist"])
  assert list(wrist) == ["wrist"] and wrist["wrist"].shape == (2, *SIZE, 3)
  np.testing.assert_array_equal(wrist["wrist"][1], single["wrist"])


def test_deterministic(renderer, mj_model, data):
  first = renderer.render(data)["primary"]
  np.testing.assert_array_equal(first, renderer.render(data)["primary"])
  with render.BatchRenderer(mj_model, size=SIZE, shadow_size=512) as other:
    np.testing.assert_array_equal(first, other.render(data)["primary"])


def test_changes_when_cube_moves(renderer, mj_model, data):
  moved = _move_cube(mj_model, _batch(data, 2), jnp.array([0.0, 0.15]))
  images = renderer.render(moved)["primary"]
  diff = np.abs(images[0].astype(int) - images[1].astype(int)).max(-1)
  assert (diff > 30).sum() >= 5
  np.testing.assert_array_equal(images[0], renderer.render(data)["primary"])


def test_visual_overrides_apply_per_env_and_are_restored(renderer, mj_model, data):
  nominal = renderer.render(data)["primary"]
  cube = mj_model.geom("cube").id
  rgba = np.broadcast_to(mj_model.geom_rgba, (2,) + mj_model.geom_rgba.shape).copy()
  rgba[1, cube] = (0.1, 0.2, 0.9, 1.0)    # env 1: a blue cube
  images = renderer.render(_batch(data, 2), overrides={"geom_rgba": rgba})["primary"]
  np.testing.assert_array_equal(images[0], nominal)
  changed = np.abs(images[1].astype(int) - nominal.astype(int)).max(-1) > 30
  assert changed.sum() >= 5
  assert (images[1][changed][:, 2] > images[1][changed][:, 0]).all()   # bluer than red
  # A darker light (shared by the batch) changes the picture; the model copy is restored after.
  dark = renderer.render(data, overrides={"light_diffuse": 0.3 * mj_model.light_diffuse})
  assert dark["primary"].mean() < nominal.mean() - 2
  np.testing.assert_array_equal(renderer.render(data)["primary"], nominal)
  np.testing.assert_array_equal(renderer.mj_model.geom_rgba, mj_model.geom_rgba)


def test_camera_light_randomization_fields(renderer, mj_model, data):
  """`randomization.camera_light_fields`, vmapped over keys, is a valid overrides dict."""
  mjx_model = mjx.put_model(mj_model)
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  fields = jax.vmap(lambda k: randomization.camera_light_fields(mjx_model, k))(keys)
  nominal = renderer.render(data)["primary"]
  images = renderer.render(_batch(data, 2), overrides=fields)["primary"]
  for image in images:
    assert np.abs(image.astype(int) - nominal.astype(int)).max() > 30
  assert np.abs(images[0].astype(int) - images[1].astype(int)).max() > 30


def test_arm_visual_randomization_changes_pixels(renderer, mj_model, data):
  """The arm tasks' visual DR (`manipulation.randomization.visual_overrides`, vmapped over keys)
  renders: every env differs from the nominal picture and from the others; colour-only draws
  (camera and lights held) change the cube's and the table's pixels."""
  mjx_model = mjx.put_model(mj_model)
  targets = arm_dr.VisualTargets.from_model(mj_model, ("cube",))
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  fields = jax.vmap(lambda k: arm_dr.visual_overrides(mjx_model, k, targets))(keys)
  nominal = renderer.render(data, size=32)["primary"]
  images = renderer.render(_batch(data, 2), size=32, overrides=fields)["primary"]
  for image in images:
    assert np.abs(image.astype(int) - nominal.astype(int)).max() > 30
  assert np.abs(images[0].astype(int) - images[1].astype(int)).max() > 30
  colours_only = arm_dr.default_visual_config()
  for name in ("cam_pos_offset", "cam_rot_deg", "light_pos_offset"):
    colours_only[name] = (0.0, 0.0)
  colours_only.light_intensity_scale = colours_only.light_tint = (1.0, 1.0)
  colours_only.table_rgb_scale = (0.5, 0.5)
  recoloured = arm_dr.visual_overrides(mjx_model, keys[0], targets, colours_only)
  assert set(recoloured) >= {"geom_rgba", "mat_rgba"}
  image = renderer.render(data, size=32, overrides=recoloured)["primary"]
  darker = image.astype(int).sum(-1) < nominal.astype(int).sum(-1) - 30
  assert darker.mean() > 0.2        # the table (most of the picture) is half as bright


def test_bad_input_errors(renderer, mj_model, data):
  with pytest.raises(KeyError, match=r"'side'.*\['primary', 'wrist'\]"):
    renderer.render(data, cameras=["primary", "side"])
  with pytest.raises(KeyError, match="'side'"):
    render.BatchRenderer(mj_model, cameras=("side",))
  for size in (0, (64, 0), 225, (-1, 32)):
    with pytest.raises(ValueError, match="image size"):
      renderer.render(data, size=size)
  with pytest.raises(ValueError, match=r"\(0, 0\)"):
    render.BatchRenderer(mj_model, size=0)
  with pytest.raises(KeyError, match="geom_friction"):
    renderer.render(data, overrides={"geom_friction": mj_model.geom_friction})
  with pytest.raises(ValueError, match="'cam_pos' has shape"):
    renderer.render(_batch(data, 2), overrides={"cam_pos": np.zeros((3, mj_model.ncam, 3))})
  with pytest.raises(ValueError, match="nq=16"):
    renderer.render(data.replace(qpos=data.qpos[:5]))
  with pytest.raises(TypeError, match="qpos"):
    renderer.render({"qpos": data.qpos})
  with pytest.raises(ValueError, match="backend"):
    render.BatchRenderer(mj_model, backend="opengl")


def test_closed_renderer_raises(mj_model, data):
  r = render.BatchRenderer(mj_model, size=16, shadow_size=256)
  r.render(data)
  r.close()
  r.close()
  with pytest.raises(RuntimeError, match="closed"):
    r.render(data)


class _TinyEnv:
  """A stand-in one-world env on the arm model: step moves the cube along y by the action."""

  def __init__(self, mj_model, data):
    self.mj_model = mj_model
    self._data = data
    self._adr = int(mj_model.joint("cube").qposadr[0])

  def reset(self, rng):
    del rng
    return State(data=self._data, obs={"state": self._data.qpos}, reward=jnp.zeros(()),
                 done=jnp.zeros(()), metrics={}, info={})

  def step(self, state, action):
    data = state.data.replace(qpos=state.data.qpos.at[self._adr + 1].add(action[0]))
    return state.replace(data=data, obs={"state": data.qpos})


def test_camera_wrapper(mj_model, data):
  """Over the training stack (episode limit 2, vmap, auto-reset), images are added on the host."""
  batched = wrappers.wrap_for_training(_TinyEnv(mj_model, data), episode_length=2)
  env = CameraWrapper(batched, cameras=("primary", "wrist"), size=(32, 32), shadow_size=512)
  try:
    state = env.reset(jax.random.split(jax.random.PRNGKey(0), 2))
    assert env.cameras == ("primary", "wrist")
    for image in state.obs["images"].values():
      assert isinstance(image, np.ndarray) and image.shape == (2, 32, 32, 3)
      assert image.dtype == np.uint8
    assert state.obs["state"].shape == (2, mj_model.nq)
    home = state.obs["images"]["primary"][0]
    state = env.step(state, jnp.array([[0.0], [0.15]]))
    primary = state.obs["images"]["primary"]
    assert primary.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(primary[0], home)
    assert np.abs(primary[1].astype(int) - home.astype(int)).max() > 30
    # The second step ends the episodes: the images are of the fresh (home) states.
    state = env.step(state, jnp.array([[0.0], [0.15]]))
    assert state.done.tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(state.obs["images"]["primary"][1], home)
    assert "images" not in state.info["final_obs"]
    assert env.mj_model is mj_model    # other attributes forward to the wrapped env
  finally:
    env.close()


def test_mjx_warp_guard(mj_model):
  with pytest.raises(ValueError, match="impl='warp'"):
    render.BatchRenderer(mj_model, backend="mjx_warp", mjx_model=mjx.put_model(mj_model))
  with pytest.raises(ValueError, match="impl='warp'"):
    render.BatchRenderer(mj_model, backend="mjx_warp")
  if not backend.warp_available() or render.cuda_available():
    return
  with pytest.raises(RuntimeError, match="CUDA"):
    render.BatchRenderer(mj_model, backend="mjx_warp",
                         mjx_model=mjx.put_model(mj_model, impl="warp"))


@pytest.mark.slow
@pytest.mark.skipif(not backend.warp_available(), reason="warp-lang is not importable")
def test_mjx_warp_render(mj_model):
  """MJX's Warp renderer at 16x16 (on Warp's CPU kernels without CUDA: ~60 s cold, ~6 s with
  Warp's kernel cache warm)."""
  mjx_model = mjx.put_model(mj_model, impl="warp")
  d = mjx.make_data(mj_model, impl="warp", naconmax=8, njmax=16)
  key = mj_model.key("home")
  d_home = d.replace(qpos=jnp.asarray(key.qpos), mocap_pos=jnp.asarray(key.mpos)[None])
  # Batched by vmap, as an env's reset does (Warp's shared contact buffers get no world axis).
  d = jax.vmap(lambda dy: _move_cube(mj_model, d_home, dy))(jnp.array([0.0, 0.15]))
  with render.BatchRenderer(mj_model, cameras=("primary", "wrist"), size=16, backend="mjx_warp",
                            mjx_model=mjx_model, allow_cpu=True) as r:
    images = r.render(d)
    single = r.render(d_home)
    with pytest.raises(NotImplementedError, match="overrides"):
      r.render(d, overrides={"geom_rgba": mj_model.geom_rgba})
  for image in images.values():
    assert image.shape == (2, 16, 16, 3) and image.dtype == np.uint8 and image.std() > 1.0
  assert np.abs(images["primary"][0].astype(int) - images["primary"][1].astype(int)).max() > 30
  assert single["wrist"].shape == (16, 16, 3)
  np.testing.assert_array_equal(single["primary"], images["primary"][0])
