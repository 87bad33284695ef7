"""Observation encoders: history axis, ResNet option, spatial tokens, random-shift augmentation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax.policies import encoders


def _bright_pixel_images(batch, frames=None, size=16, row=8, col=7):
  shape = (batch, size, size, 3) if frames is None else (batch, frames, size, size, 3)
  images = np.full(shape, 7, np.uint8)
  images[..., row, col, :] = 255
  return jnp.asarray(images)


def test_random_shift_shape_dtype_and_identity():
  images = _bright_pixel_images(8)
  key = jax.random.PRNGKey(0)
  out = encoders.random_shift(images, key, pad=4)
  assert out.shape == images.shape and out.dtype == jnp.uint8
  assert encoders.random_shift(images, key, pad=0) is images
  history = _bright_pixel_images(8, frames=2)
  out = encoders.random_shift(history, key, pad=4)
  assert out.shape == history.shape and out.dtype == jnp.uint8
  np.testing.assert_array_equal(out[:, 0], out[:, 1])   # one shift per example, shared over T
  with pytest.raises(ValueError, match="random_shift"):
    encoders.random_shift(jnp.zeros((4, 4, 3), jnp.uint8), key)


def test_random_shift_moves_at_most_pad_pixels_with_edge_padding():
  batch, pad = 64, 4
  images = _bright_pixel_images(batch)
  out = np.asarray(encoders.random_shift(images, jax.random.PRNGKey(1), pad=pad))
  # Edge replication of a constant border never introduces new values, and the pixel (4+ px from the
  # border) survives exactly once per image.
  assert set(np.unique(out)) <= {7, 255}
  shifts = []
  for image in out:
    rows, cols = np.nonzero(image[..., 0] == 255)
    assert len(rows) == 1, (rows, cols)
    shifts.append((rows[0] - 8, cols[0] - 7))
  shifts = np.array(shifts)
  assert np.abs(shifts).max() <= pad
  assert len({tuple(s) for s in shifts}) > 10          # per example, not one shift for the batch
  assert set(shifts[:, 0]) == set(range(-pad, pad + 1))  # every offset in [-pad, pad] occurs


def test_random_shift_edge_replication_at_the_border():
  images = np.zeros((16, 8, 8, 3), np.uint8)
  images[:, 0, :, :] = 200                  # bright top row
  out = np.asarray(encoders.random_shift(jnp.asarray(images), jax.random.PRNGKey(2), pad=2))
  for image in out:
    bright = np.nonzero(image[:, 0, 0] == 200)[0]
    # A shift down by s replicates the top row s times: rows 0..s bright, the rest dark.
    np.testing.assert_array_equal(bright, np.arange(len(bright)))
    assert 0 <= len(bright) <= 3


def test_augment_images_only_touches_image_keys():
  obs = {"proprio": jnp.ones((8, 3)), "cam": _bright_pixel_images(8)}
  out = encoders.augment_images(obs, ("cam",), jax.random.PRNGKey(0))
  assert out["proprio"] is obs["proprio"]
  assert not np.array_equal(out["cam"], obs["cam"])
  assert obs["cam"] is not out["cam"] and "cam" in obs   # the input dict is not modified


def test_image_to_float_range():
  images = jnp.array([0, 255, 128], jnp.uint8)
  np.testing.assert_allclose(encoders.image_to_float(images), [-1.0, 1.0, 128 / 127.5 - 1], atol=1e-6)
  np.testing.assert_array_equal(encoders.image_to_float(jnp.array([0.5])), [0.5])


def test_spatial_softmax_finds_the_peak():
  features = np.zeros((1, 5, 9, 2), np.float32)
  features[0, 1, 6, 0] = 50.0   # channel 0 peaks at row 1, col 6
  features[0, 4, 0, 1] = 50.0   # channel 1 at row 4, col 0
  out = encoders.spatial_softmax(jnp.asarray(features))
  xs, ys = np.linspace(-1, 1, 9), np.linspace(-1, 1, 5)
  np.testing.assert_allclose(out[0], [xs[6], xs[0], ys[1], ys[4]], atol=1e-4)


def test_sincos_2d_positions():
  pos = encoders.sincos_2d_positions(3, 4, 16)
  assert pos.shape == (12, 16)
  assert len({tuple(np.round(np.asarray(p), 5)) for p in pos}) == 12   # every position distinct
  with pytest.raises(ValueError, match="divisible by 4"):
    encoders.sincos_2d_positions(2, 2, 6)


def test_observation_encoder_backward_compatible_names_and_shapes():
  enc = encoders.ObservationEncoder(16, "state", ("wrist",))
  obs = {"state": jnp.zeros((2, 4)), "wrist": jnp.zeros((2, 16, 16, 3), jnp.uint8)}
  out, params = jax.eval_shape(enc.init_with_output, jax.random.PRNGKey(0), obs)
  assert set(params["params"]) == {"state", "image_wrist", "fuse"}
  assert set(params["params"]["image_wrist"]) >= {"Conv_0", "GroupNorm_0", "Dense_0"}
  assert out.shape == (2, 16)


@pytest.mark.parametrize("image_encoder", ["conv", "resnet"])
def test_observation_encoder_with_history_shapes(image_encoder):
  enc = encoders.ObservationEncoder(16, "proprio", ("cam",), image_encoder=image_encoder,
                                    image_channels=(8, 16))
  obs = {"proprio": jnp.ones((3, 2, 5)), "cam": jnp.zeros((3, 2, 16, 16, 3), jnp.uint8)}
  out, params = jax.eval_shape(enc.init_with_output, jax.random.PRNGKey(0), obs)
  assert out.shape == (3, 16)
  assert params["params"]["state"]["Dense_0"]["kernel"].shape == (2 * 5, 16)   # flattened history
  assert params["params"]["fuse"]["kernel"].shape == (16 + 16 * 2, 16)         # state + 2 frames
  assert ("keypoints" in params["params"]["image_cam"]) == (image_encoder == "resnet")


def test_observation_encoder_history_frames_share_weights_and_keep_order():
  enc = encoders.ObservationEncoder(16, None, ("cam",), image_encoder="resnet", image_channels=(8, 16))
  key = jax.random.PRNGKey(0)
  images = jax.random.randint(key, (3, 2, 16, 16, 3), 0, 256).astype(jnp.uint8)
  init = jax.jit(enc.init_with_output)
  out, params = init(key, {"cam": images})
  swapped, _ = init(key, {"cam": images[:, ::-1]})
  same, _ = init(key, {"cam": jnp.concatenate([images[:, :1], images[:, :1]], axis=1)})
  assert out.shape == (3, 16)
  assert not np.allclose(swapped, out, atol=1e-4)
  # One image network for all frames: its parameters do not depend on T.
  assert params["params"]["image_cam"]["backbone"]["stem"]["kernel"].shape == (3, 3, 3, 8)
  assert not np.allclose(same, out, atol=1e-4)


def test_observation_encoder_rejects_unknown_encoder_and_bad_shapes():
  obs = {"cam": jnp.zeros((2, 8, 8, 3), jnp.uint8)}
  with pytest.raises(ValueError, match="image_encoder"):
    encoders.ObservationEncoder(8, None, ("cam",), image_encoder="vit").init(jax.random.PRNGKey(0), obs)
  with pytest.raises(ValueError, match="cam"):
    encoders.ObservationEncoder(8, None, ("cam",)).init(jax.random.PRNGKey(0), {"cam": jnp.zeros((8, 8, 3))})
  with pytest.raises(KeyError, match="proprio"):
    encoders.ObservationEncoder(8, "proprio", ()).init(jax.random.PRNGKey(0), obs)


# resnet (8, 16): stride-2 stem, stride-1 and stride-2 stages, 16 -> 4; conv (8, 8, 16): 3 stride-2 convs.
@pytest.mark.parametrize("image_encoder,channels,hw", [("resnet", (8, 16), 4), ("conv", (8, 8, 16), 2)])
def test_image_token_encoder_shapes(image_encoder, channels, hw):
  enc = encoders.ImageTokenEncoder(("a", "b"), d_model=16, image_encoder=image_encoder,
                                   image_channels=channels)
  key = jax.random.PRNGKey(0)
  obs = {"a": jnp.zeros((2, 16, 16, 3), jnp.uint8), "b": jnp.zeros((2, 3, 16, 16, 3), jnp.uint8)}
  tokens, params = jax.eval_shape(enc.init_with_output, key, obs)
  assert tokens.shape == (2, (1 + 3) * hw * hw, 16), tokens.shape
  assert params["params"]["frame_embed_b"].shape == (3, 16)
