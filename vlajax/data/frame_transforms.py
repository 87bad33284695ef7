"""Frame transforms (TF, one frame): decode + resize every camera, augment for training only.

Randomness is stateless: an augmentation draws from `seed` (int32[2]), which the mixture derives
from the run seed and the example's global index, so the same example always gets the same crop
and colour jitter, and a resumed iterator reproduces them. One draw per camera is shared across the
history window. Defaults follow Octo's: random resized crop (scale 0.8-1.0, ratio 0.9-1.1),
brightness 0.1, contrast and saturation 0.9-1.1, hue 0.05.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Augment:
  crop_scale: tuple[float, float] = (0.8, 1.0)
  crop_ratio: tuple[float, float] = (0.9, 1.1)
  brightness: float = 0.1
  contrast: tuple[float, float] = (0.9, 1.1)
  saturation: tuple[float, float] = (0.9, 1.1)
  hue: float = 0.05


def decode_resize(encoded: tf.Tensor, size: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
  """string[W] encoded images (b"" = missing) -> uint8[W, h, w, 3] and bool[W] present."""
  present = tf.strings.length(encoded) > 0

  def one(blob):
    def decode():
      image = tf.io.decode_image(blob, channels=3, expand_animations=False)
      image.set_shape([None, None, 3])
      resized = tf.image.resize(image, size, method="bilinear", antialias=True)
      return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    return tf.cond(tf.strings.length(blob) > 0, decode,
                   lambda: tf.zeros([*size, 3], tf.uint8))

  images = tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([*size, 3], tf.uint8))
  return images, present


def augment(images: tf.Tensor, seed: tf.Tensor, params: Augment) -> tf.Tensor:
  """uint8[W, h, w, 3] -> augmented uint8 (same draw for every history step)."""
  size = tf.shape(images)[1:3]
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
  area = tf.random.stateless_uniform([], seeds[0], *params.crop_scale)
  log_ratio = tf.random.stateless_uniform(
      [], seeds[1], tf.math.log(params.crop_ratio[0]), tf.math.log(params.crop_ratio[1]))
  ratio = tf.exp(log_ratio)
  crop_h = tf.minimum(tf.sqrt(area / ratio), 1.0)
  crop_w = tf.minimum(tf.sqrt(area * ratio), 1.0)
  top = tf.random.stateless_uniform([], seeds[2]) * (1.0 - crop_h)
  left = tf.random.stateless_uniform([], seeds[3]) * (1.0 - crop_w)
  box = tf.stack([top, left, top + crop_h, left + crop_w])
  count = tf.shape(images)[0]
  x = tf.image.crop_and_resize(tf.cast(images, tf.float32) / 255.0,
                               tf.tile(box[None], [count, 1]), tf.range(count), size)
  x = tf.image.stateless_random_brightness(x, params.brightness, seeds[4])
  x = tf.image.stateless_random_contrast(x, *params.contrast, seeds[5])
  sat_hue = tf.random.experimental.stateless_split(seeds[6], 2)
  x = tf.image.stateless_random_saturation(x, *params.saturation, sat_hue[0])
  x = tf.image.stateless_random_hue(x, params.hue, sat_hue[1])
  return tf.cast(tf.clip_by_value(tf.round(x * 255.0), 0, 255), tf.uint8)


def apply(frame: dict, size: tuple[int, int], seed: tf.Tensor | None,
          params: Augment | None) -> dict:
  """Decodes/resizes both cameras of a frame; augments when `params` is given (training)."""
  frame = dict(frame)
  masks = {}
  for i, camera in enumerate(("primary", "wrist")):
    images, present = decode_resize(frame[f"image_{camera}"], size)
    if params is not None:
      cam_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), i)
      images = augment(images, cam_seed, params)
      images = images * tf.cast(present, tf.uint8)[:, None, None, None]  # missing stays black
    frame[f"image_{camera}"] = images
    masks[camera] = present & frame["timestep_pad_mask"]
  frame["image_mask"] = masks
  return frame
