"""Standardization registry: each OXE dataset's on-disk layout -> one common trajectory format.

`standardize(name, episode)` maps a parsed episode (`rlds.RldsSource.parse_episode`, tensors [T, ...])
to

  {"image_primary": string[T],  "image_wrist": string[T]   (encoded; b"" where there is no camera),
   "proprio": float32[T, p],    "action": float32[T, a],   "instruction": string[T]}

with the action in the common representation (see `DatasetSpec.action_space`):

  "ee_delta":   [dx, dy, dz, droll, dpitch, dyaw, gripper], gripper absolute, 1 = open, 0 = closed
  "ee_delta_2d" (language_table): the same 7-dim layout with only dx, dy valid
  "joint":      [joint deltas..., gripper] with the dataset's own dimension

`DatasetSpec.action_mask` marks the valid dims; `normalize_action` / `normalize_proprio` mark the
dims that normalization may touch (never the gripper). Conventions follow Octo's
`oxe_standardization_transforms` (facts from the datasets' documentation); the code is ours.
An unknown dataset or a missing feature raises `KeyError` naming it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf

from vlajax.data import corruption

# Bumped whenever a transform changes, so cached statistics are recomputed.
REGISTRY_VERSION = "1"

EE_DIM = 7
_EE_MASK = (True,) * 7
_EE_NORMALIZE = (True,) * 6 + (False,)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How one dataset becomes the common format.

  primary_image / wrist_image: key under `steps/observation` (None: no such camera).
  proprio: pieces `(key under observation, start, stop)` concatenated into the state vector.
  action_fn: steps dict -> float32[T, action dim] in the common representation.
  instruction: key path under `steps` ("observation/natural_language_instruction"), or None when
    the dataset has none or it is uninformative (then b"").
  instruction_codepoints: the instruction is int32 UTF-8 codepoints, zero padded (language_table).
  """
  name: str
  primary_image: str | None
  wrist_image: str | None
  proprio: tuple[tuple[str, int | None, int | None], ...]
  action_fn: Callable[[Mapping[str, Any]], tf.Tensor]
  action_space: str = "ee_delta"
  action_mask: tuple[bool, ...] = _EE_MASK
  normalize_action: tuple[bool, ...] = _EE_NORMALIZE
  normalize_proprio: tuple[bool, ...] | None = None   # None: every proprio dim
  instruction: str | None = "observation/natural_language_instruction"
  instruction_codepoints: bool = False

  @property
  def action_dim(self) -> int:
    return len(self.action_mask)

  def proprio_dim(self) -> int:
    return sum(stop - start for _, start, stop in self.proprio)


def get(steps: Mapping[str, Any], path: str, dataset: str):
  """`steps[path]` for a "/"-separated path (keys themselves may contain "/", as kuka's do)."""
  node = steps
  rest = path
  while rest:
    if not isinstance(node, Mapping):
      raise KeyError(f"dataset '{dataset}': feature 'steps/{path}' not found")
    if rest in node:
      return node[rest]
    head, sep, tail = rest.partition("/")
    if head not in node or not sep:
      raise KeyError(f"dataset '{dataset}': missing feature 'steps/{path}' "
                     f"(found at that level: {sorted(node)})")
    node, rest = node[head], tail
  return node


def relative_to_absolute_gripper(command: tf.Tensor) -> tf.Tensor:
  """Relative gripper commands (+1 close, -1 open, ~0 no change) -> absolute (1 open, 0 closed).

  Each step holds the latest command so far; before the first command the gripper is taken to be
  in the opposite state of that command (open when there is no command at all). float32[T] -> [T].
  """
  command = tf.convert_to_tensor(command, tf.float32)
  state = tf.where(command > 0.1, 0.0, tf.where(command < -0.1, 1.0, -1.0))
  has = state >= 0
  first = tf.cond(tf.reduce_any(has), lambda: tf.boolean_mask(state, has)[0], lambda: 0.0)
  initial = 1.0 - first
  return tf.scan(lambda carry, s: tf.where(s >= 0, s, carry), state, initializer=initial)


def _f32(x):
  return tf.cast(x, tf.float32)


def _float(steps: Mapping[str, Any], path: str, dataset: str) -> tf.Tensor:
  """float32[T, ...] of the numeric feature `steps/<path>`; errors name dataset and feature.

  A feature that arrives as string[T] (or [T, 1]) holds each step's values as zlib-compressed
  float32 bytes (what a reader sees of tfds' `Encoding.ZLIB` tensors when decoding is skipped, and
  how some conversions store state): it is decompressed to float32[T, n], as tfds would decode it.
  """
  x = get(steps, path, dataset)
  with corruption.decoding(f"steps/{path}"):
    if x.dtype == tf.string:
      values = tf.io.decode_raw(tf.io.decode_compressed(x, compression_type="ZLIB"), tf.float32)
      return tf.reshape(values, [tf.shape(x)[0], -1])
    return _f32(x)


def _col(x):
  x = _f32(x)
  return x[:, None] if x.shape.rank == 1 else x


def _rt1_action(name):
  def fn(steps):
    gripper = relative_to_absolute_gripper(_col(_float(steps, "action/gripper_closedness_action",
                                                    name))[:, 0])
    return tf.concat([_float(steps, "action/world_vector", name),
                      _float(steps, "action/rotation_delta", name), gripper[:, None]], -1)
  return fn


def _open_gripper_action(name):
  """bridge (OXE copy) and toto: world_vector, rotation_delta, boolean open_gripper."""
  def fn(steps):
    return tf.concat([_float(steps, "action/world_vector", name),
                      _float(steps, "action/rotation_delta", name),
                      _col(_float(steps, "action/open_gripper", name))], -1)
  return fn


def _taco_action(steps):
  rel = _float(steps, "action/rel_actions_world", "taco_play")
  return tf.concat([rel[:, :6], tf.clip_by_value(rel[:, 6:7], 0.0, 1.0)], -1)


def _jaco_action(steps):
  world = _float(steps, "action/world_vector", "jaco_play")
  gripper = relative_to_absolute_gripper(
      _col(_float(steps, "action/gripper_closedness_action", "jaco_play"))[:, 0])
  return tf.concat([world, tf.zeros_like(world), gripper[:, None]], -1)


def _language_table_action(steps):
  xy = _float(steps, "action", "language_table")
  return tf.concat([xy, tf.zeros_like(xy[:, :1]) * tf.ones([1, 5])], -1)


def _flat_action(name, gripper: str):
  """Flat float[7] actions; `gripper`: "close" (1 = close), "close_pm1" (+1 close / -1 open)."""
  def fn(steps):
    action = _float(steps, "action", name)
    g = action[:, 6:7]
    if gripper == "close_pm1":
      g = tf.clip_by_value(g, 0.0, 1.0)
    return tf.concat([action[:, :6], 1.0 - g], -1)
  return fn


_SPECS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
  if len(spec.normalize_action) != spec.action_dim:
    raise ValueError(f"dataset '{spec.name}': normalize_action has {len(spec.normalize_action)} "
                     f"dims, action has {spec.action_dim}")
  _SPECS[spec.name] = spec
  return spec


register(DatasetSpec(
    name="fractal20220817_data", primary_image="image", wrist_image=None,
    proprio=(("base_pose_tool_reached", 0, 7), ("gripper_closed", 0, 1)),
    normalize_proprio=(True,) * 7 + (False,),
    action_fn=_rt1_action("fractal20220817_data")))
register(DatasetSpec(
    name="kuka", primary_image="image", wrist_image=None,
    proprio=(("clip_function_input/base_pose_tool_reached", 0, 7), ("gripper_closed", 0, 1)),
    normalize_proprio=(True,) * 7 + (False,),
    action_fn=_rt1_action("kuka"), instruction=None))  # kuka's instructions are uninformative
register(DatasetSpec(
    name="bridge", primary_image="image", wrist_image=None, proprio=(("state", 0, 7),),
    normalize_proprio=(True,) * 6 + (False,), action_fn=_open_gripper_action("bridge")))
register(DatasetSpec(
    name="taco_play", primary_image="rgb_static", wrist_image="rgb_gripper",
    proprio=(("robot_obs", 0, 7),), action_fn=_taco_action))
register(DatasetSpec(
    name="jaco_play", primary_image="image", wrist_image="image_wrist",
    proprio=(("end_effector_cartesian_pos", 0, 7),), action_fn=_jaco_action,
    action_mask=(True,) * 3 + (False,) * 3 + (True,)))
register(DatasetSpec(
    name="berkeley_autolab_ur5", primary_image="image", wrist_image="hand_image",
    proprio=(("robot_state", 6, 14),), action_fn=_rt1_action("berkeley_autolab_ur5")))
register(DatasetSpec(
    name="toto", primary_image="image", wrist_image=None, proprio=(("state", 0, 7),),
    action_fn=_open_gripper_action("toto"), instruction=None))
register(DatasetSpec(
    name="language_table", primary_image="rgb", wrist_image=None,
    proprio=(("effector_translation", 0, 2),), action_fn=_language_table_action,
    action_space="ee_delta_2d", action_mask=(True, True) + (False,) * 5,
    normalize_action=(True, True) + (False,) * 5,
    instruction="observation/instruction", instruction_codepoints=True))
register(DatasetSpec(
    name="stanford_hydra_dataset_converted_externally_to_rlds", primary_image="image",
    wrist_image="wrist_image", proprio=(("state", 0, 3), ("state", 7, 10), ("state", 24, 25)),
    action_fn=_flat_action("stanford_hydra_dataset_converted_externally_to_rlds", "close"),
    instruction=None))
register(DatasetSpec(
    name="austin_buds_dataset_converted_externally_to_rlds", primary_image="image",
    wrist_image="wrist_image", proprio=(("state", 0, 8),),
    action_fn=_flat_action("austin_buds_dataset_converted_externally_to_rlds", "close_pm1"),
    instruction=None))


def names() -> list[str]:
  return sorted(_SPECS)


def spec(name: str) -> DatasetSpec:
  if name not in _SPECS:
    raise KeyError(f"unknown dataset '{name}': not in the standardization registry "
                   f"(known: {', '.join(names())})")
  return _SPECS[name]


def register_generic(name: str, primary_image: str | None = "image",
                     wrist_image: str | None = None, state_key: str = "state",
                     state_dim: int | None = None, action_dim: int = 7,
                     action_space: str = "ee_delta",
                     gripper_index: int | None = -1,
                     instruction: str | None = "language_instruction") -> DatasetSpec:
  """Registers a dataset in the flat layout our `writer` produces (and most converted datasets).

  The action is taken as-is (already in the common representation: `ee_delta` with gripper 1 =
  open, or `joint` with its own dimension). `gripper_index` (None: no gripper) is excluded from
  normalization.
  """
  normalize = [True] * action_dim
  if gripper_index is not None:
    normalize[gripper_index] = False
  proprio = ((state_key, 0, state_dim),) if state_key and state_dim else ()
  return register(DatasetSpec(
      name=name, primary_image=primary_image, wrist_image=wrist_image, proprio=proprio,
      action_fn=lambda steps: _float(steps, "action", name), action_space=action_space,
      action_mask=(True,) * action_dim, normalize_action=tuple(normalize),
      instruction=instruction))


def standardize(name: str, episode: Mapping[str, Any]) -> dict[str, tf.Tensor]:
  """One parsed episode of dataset `name` -> the common trajectory format (module docstring)."""
  s = spec(name)
  steps = episode["steps"]
  length = tf.shape(get(steps, "is_first", name))[0]
  empty = tf.fill([length], tf.constant(b"", tf.string))
  out = {}
  for camera, key in (("image_primary", s.primary_image), ("image_wrist", s.wrist_image)):
    out[camera] = get(steps, f"observation/{key}", name) if key else empty
  pieces = [_col(_float(steps, f"observation/{key}", name))[:, start:stop]
            for key, start, stop in s.proprio]
  out["proprio"] = tf.concat(pieces, -1) if pieces else tf.zeros([length, 0])
  action = s.action_fn(steps)
  action.shape.assert_is_compatible_with([None, s.action_dim])
  out["action"] = tf.ensure_shape(action, [None, s.action_dim])
  if s.instruction is None:
    out["instruction"] = empty
  elif s.instruction_codepoints:
    codes = tf.cast(get(steps, s.instruction, name), tf.int32)
    text = tf.strings.unicode_encode(codes, "UTF-8")
    out["instruction"] = tf.strings.regex_replace(text, "\x00.*", "")
  else:
    out["instruction"] = get(steps, s.instruction, name)
  return out


def proprio_normalize_mask(name: str) -> tuple[bool, ...]:
  s = spec(name)
  return s.normalize_proprio if s.normalize_proprio is not None else (True,) * s.proprio_dim()


def check_dims(names_: Sequence[str], action_dim: int, proprio_dim: int) -> None:
  """Raises ValueError naming a dataset whose action / proprio does not fit the padded dims."""
  for n in names_:
    s = spec(n)
    if s.action_dim > action_dim:
      raise ValueError(f"dataset '{n}' has {s.action_dim} action dims > action_dim {action_dim}")
    if s.proprio_dim() > proprio_dim:
      raise ValueError(f"dataset '{n}' has {s.proprio_dim()} proprio dims > proprio_dim "
                       f"{proprio_dim}")
