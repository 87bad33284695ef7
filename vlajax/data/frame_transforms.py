"""Frame transforms (TF, one frame): decode + resize every camera, augment for training only.

Randomness is stateless: an augmentation draws from `seed` (int64[2]), which the mixture derives
from the run seed and the example's global index, so the same example always gets the same crop
and colour jitter, and a resumed iterator reproduces them. One draw per camera is shared across the
history window. Defaults follow Octo's: random resized crop (scale 0.8-1.0, ratio 0.9-1.1),
brightness 0.1, contrast and saturation 0.9-1.1, hue 0.05. The crop and the resize are one
`crop_and_resize` from the decoded image; brightness, contrast and saturation are blends
(saturation against the grayscale image), hue goes through HSV.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from vlajax.data import corruption


@dataclasses.dataclass(frozen=True)
class Augment:
  crop_scale: tuple[float, float] = (0.8, 1.0)
  crop_ratio: tuple[float, float] = (0.9, 1.1)
  brightness: float = 0.1
  contrast: tuple[float, float] = (0.9, 1.1)
  saturation: tuple[float, float] = (0.9, 1.1)
  hue: float = 0.05


def _decode(blob: tf.Tensor) -> tf.Tensor:
  image = tf.io.decode_image(blob, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
  return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)


def _crop_box(seed: tf.Tensor, params: Augment) -> tf.Tensor:
  """float32[4] (y0, x0, y1, x1) in [0, 1] of a random resized crop."""
  seeds = tf.random.experimental.stateless_split(seed, 4)
  area = tf.random.stateless_uniform([], seeds[0], *params.crop_scale)
  log_ratio = tf.random.stateless_uniform(
      [], seeds[1], tf.math.log(params.crop_ratio[0]), tf.math.log(params.crop_ratio[1]))
  ratio = tf.exp(log_ratio)
  crop_h = tf.minimum(tf.sqrt(area / ratio), 1.0)
  crop_w = tf.minimum(tf.sqrt(area * ratio), 1.0)
  top = tf.random.stateless_uniform([], seeds[2]) * (1.0 - crop_h)
  left = tf.random.stateless_uniform([], seeds[3]) * (1.0 - crop_w)
  return tf.stack([top, left, top + crop_h, left + crop_w])


def _color(x: tf.Tensor, seed: tf.Tensor, params: Augment) -> tf.Tensor:
  """Colour jitter of float images in [0, 255], [..., h, w, 3]."""
  seeds = tf.random.experimental.stateless_split(seed, 4)
  x = x + 255.0 * tf.random.stateless_uniform([], seeds[0], -params.brightness, params.brightness)
  mean = tf.reduce_mean(x, axis=[-3, -2, -1], keepdims=True)
  x = mean + tf.random.stateless_uniform([], seeds[1], *params.contrast) * (x - mean)
  gray = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), -1, keepdims=True)
  x = gray + tf.random.stateless_uniform([], seeds[2], *params.saturation) * (x - gray)
  if params.hue > 0:
    delta = tf.random.stateless_uniform([], seeds[3], -params.hue, params.hue)
    x = 255.0 * tf.image.adjust_hue(tf.clip_by_value(x, 0.0, 255.0) / 255.0, delta)
  return x


def decode_resize(encoded: tf.Tensor, size: tuple[int, int], seed: tf.Tensor | None = None,
                  params: Augment | None = None) -> tuple[tf.Tensor, tf.Tensor]:
  """string[W] encoded images (b"" = missing) -> uint8[W, h, w, 3] and bool[W] present.

  With `params`, every step gets the same random resized crop and colour jitter drawn from `seed`.
  """
  present = tf.strings.length(encoded) > 0
  box = None
  if params is not None:
    crop_seed, color_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    box = _crop_box(crop_seed, params)

  def one(blob):
    def decode():
      image = tf.cast(_decode(blob), tf.float32)
      if box is None:
        return _to_uint8(tf.image.resize(image, size, method="bilinear", antialias=True))
      x = tf.image.crop_and_resize(image[None], box[None], [0], size)[0]
      return _to_uint8(_color(x, color_seed, params))
    return tf.cond(tf.strings.length(blob) > 0, decode, lambda: tf.zeros([*size, 3], tf.uint8))

  if encoded.shape[0] == 1:                       # no history: skip map_fn's loop
    return one(encoded[0])[None], present
  images = tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([*size, 3], tf.uint8))
  return images, present


def apply(frame: dict, size: tuple[int, int], seed: tf.Tensor | None,
          params: Augment | None) -> dict:
  """Decodes/resizes both cameras of a frame; augments when `params` is given (training)."""
  frame = dict(frame)
  masks = {}
  for i, camera in enumerate(("primary", "wrist")):
    cam_seed = None
    if params is not None:
      cam_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), i)
    with corruption.decoding(f"image_{camera}"):   # names the camera in eager re-runs
      images, present = decode_resize(frame[f"image_{camera}"], size, cam_seed, params)
    frame[f"image_{camera}"] = images
    masks[camera] = present & frame["timestep_pad_mask"]
  if "image_goal" in frame:                      # goal images are not augmented
    with corruption.decoding("image_goal"):
      frame["image_goal"], masks["goal"] = decode_resize(frame["image_goal"], size)
  frame["image_mask"] = masks
  return frame
