"""On-disk feature specs of Open X-Embodiment datasets (the public tfds `0.1.0` copies).

Names, shapes, dtypes and encodings follow the tfds catalog of each dataset (episode-level
metadata is trimmed to what the copies carry; language embeddings are kept since they are part of
every step). `tfds_features(name)` builds the `tfds.features.FeaturesDict` so that tests and tools can
write RLDS directories that look exactly like a download, with smaller images where asked.

Leaf notation: `("image", (h, w, 3))`, `("tensor", shape, dtype[, "zlib"])`, `("text",)`,
`("scalar", dtype)`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_F32, _I32, _BOOL = "float32", "int32", "bool"
_RLDS_FLAGS = {"is_first": ("scalar", _BOOL), "is_last": ("scalar", _BOOL),
               "is_terminal": ("scalar", _BOOL)}


def _rt1_action() -> dict:
  """The RT-1 style action dict shared by fractal and kuka."""
  return {
      "base_displacement_vector": ("tensor", (2,), _F32),
      "base_displacement_vertical_rotation": ("tensor", (1,), _F32),
      "gripper_closedness_action": ("tensor", (1,), _F32),
      "rotation_delta": ("tensor", (3,), _F32),
      "terminate_episode": ("tensor", (3,), _I32),
      "world_vector": ("tensor", (3,), _F32),
  }


def _converted_externally(image_hw, state_dim, wrist=True) -> dict:
  """The `*_converted_externally_to_rlds` layout: flat action, per-step language_instruction."""
  obs = {"image": ("image", (*image_hw, 3)), "state": ("tensor", (state_dim,), _F32)}
  if wrist:
    obs["wrist_image"] = ("image", (*image_hw, 3))
  return {
      "episode_metadata": {"file_path": ("text",)},
      "steps": {
          "action": ("tensor", (7,), _F32),
          "discount": ("scalar", _F32),
          **_RLDS_FLAGS,
          "language_embedding": ("tensor", (512,), _F32),
          "language_instruction": ("text",),
          "observation": obs,
          "reward": ("scalar", _F32),
      },
  }


OXE_SPECS: dict[str, dict[str, Any]] = {
    "fractal20220817_data": {"steps": {
        "action": _rt1_action(),
        **_RLDS_FLAGS,
        "observation": {
            "base_pose_tool_reached": ("tensor", (7,), _F32),
            "gripper_closed": ("tensor", (1,), _F32),
            "gripper_closedness_commanded": ("tensor", (1,), _F32),
            "height_to_bottom": ("tensor", (1,), _F32),
            "image": ("image", (256, 320, 3)),
            "natural_language_embedding": ("tensor", (512,), _F32),
            "natural_language_instruction": ("text",),
            "orientation_box": ("tensor", (2, 3), _F32),
            "orientation_start": ("tensor", (4,), _F32),
            "robot_orientation_positions_box": ("tensor", (3, 3), _F32),
            "rotation_delta_to_go": ("tensor", (3,), _F32),
            "src_rotation": ("tensor", (4,), _F32),
            "vector_to_go": ("tensor", (3,), _F32),
            "workspace_bounds": ("tensor", (3, 3), _F32),
        },
        "reward": ("scalar", _F32),
    }},
    "kuka": {"success": ("scalar", _BOOL), "steps": {
        "action": _rt1_action(),
        **_RLDS_FLAGS,
        "observation": {
            "clip_function_input/base_pose_tool_reached": ("tensor", (7,), _F32, "zlib"),
            "clip_function_input/workspace_bounds": ("tensor", (3, 3), _F32, "zlib"),
            "gripper_closed": ("tensor", (1,), _F32, "zlib"),
            "height_to_bottom": ("tensor", (1,), _F32, "zlib"),
            "image": ("image", (512, 640, 3)),
            "natural_language_embedding": ("tensor", (512,), _F32, "zlib"),
            "natural_language_instruction": ("text",),
            "task_id": ("tensor", (1,), _F32, "zlib"),
        },
        "reward": ("scalar", _F32),
    }},
    # The official OXE copy of bridge: dict action with a boolean open_gripper and NO discount.
    "bridge": {"steps": {
        "action": {
            "open_gripper": ("scalar", _BOOL),
            "rotation_delta": ("tensor", (3,), _F32),
            "terminate_episode": ("scalar", _F32),
            "world_vector": ("tensor", (3,), _F32),
        },
        **_RLDS_FLAGS,
        "observation": {
            "image": ("image", (480, 640, 3)),
            "natural_language_embedding": ("tensor", (512,), _F32),
            "natural_language_instruction": ("text",),
            "state": ("tensor", (7,), _F32),
        },
        "reward": ("scalar", _F32),
    }},
    "taco_play": {"steps": {
        "action": {
            "actions": ("tensor", (7,), _F32),
            "rel_actions_gripper": ("tensor", (7,), _F32),
            "rel_actions_world": ("tensor", (7,), _F32),
            "terminate_episode": ("scalar", _F32),
        },
        **_RLDS_FLAGS,
        "observation": {
            "depth_gripper": ("tensor", (84, 84), _F32),
            "depth_static": ("tensor", (150, 200), _F32),
            "natural_language_embedding": ("tensor", (512,), _F32),
            "natural_language_instruction": ("text",),
            "rgb_gripper": ("image", (84, 84, 3)),
            "rgb_static": ("image", (150, 200, 3)),
            # EE position (3), EE euler (3), gripper width (1), joints (7), gripper action (1).
            "robot_obs": ("tensor", (15,), _F32),
            "structured_language_instruction": ("text",),
        },
        "reward": ("scalar", _F32),
    }},
    "jaco_play": {"steps": {
        "action": {
            "gripper_closedness_action": ("tensor", (1,), _F32),
            "terminate_episode": ("tensor", (3,), _I32),
            "world_vector": ("tensor", (3,), _F32),
        },
        **_RLDS_FLAGS,
        "observation": {
            "end_effector_cartesian_pos": ("tensor", (7,), _F32),
            "end_effector_cartesian_velocity": ("tensor", (6,), _F32),
            "image": ("image", (224, 224, 3)),
            "image_wrist": ("image", (224, 224, 3)),
            "joint_pos": ("tensor", (8,), _F32),
            "natural_language_embedding": ("tensor", (512,), _F32),
            "natural_language_instruction": ("text",),
        },
        "reward": ("scalar", _F32),
    }},
    "berkeley_autolab_ur5": {"steps": {
        "action": {
            "gripper_closedness_action": ("scalar", _F32),
            "rotation_delta": ("tensor", (3,), _F32),
            "terminate_episode": ("scalar", _F32),
            "world_vector": ("tensor", (3,), _F32),
        },
        **_RLDS_FLAGS,
        "observation": {
            "hand_image": ("image", (480, 640, 3)),
            "image": ("image", (480, 640, 3)),
            "image_with_depth": ("tensor", (480, 640, 1), _F32),
            "natural_language_embedding": ("tensor", (512,), _F32),
            "natural_language_instruction": ("text",),
            # joints (6), EE xyz (3) + quaternion (4), gripper (1), ...
            "robot_state": ("tensor", (15,), _F32),
        },
        "reward": ("scalar", _F32),
    }},
    "toto": {"steps": {
        "action": {
            "open_gripper": ("scalar", _BOOL),
            "rotation_delta": ("tensor", (3,), _F32),
            "terminate_episode": ("scalar", _F32),
            "world_vector": ("tensor", (3,), _F32),
        },
        **_RLDS_FLAGS,
        "observation": {
            "image": ("image", (480, 640, 3)),
            "natural_language_embedding": ("tensor", (512,), _F32),
            "natural_language_instruction": ("text",),
            "state": ("tensor", (7,), _F32),
        },
        "reward": ("scalar", _F32),
    }},
    # 2-D end-effector actions; the instruction is 512 int32 UTF-8 codepoints, zero padded.
    "language_table": {"episode_id": ("text",), "steps": {
        "action": ("tensor", (2,), _F32),
        **_RLDS_FLAGS,
        "observation": {
            "effector_target_translation": ("tensor", (2,), _F32),
            "effector_translation": ("tensor", (2,), _F32),
            "instruction": ("tensor", (512,), _I32),
            "rgb": ("image", (360, 640, 3)),
        },
        "reward": ("scalar", _F32),
    }},
    # state: EE xyz (3), EE quaternion (4), EE euler (3), joints (7), joint velocities (7), gripper (3).
    "stanford_hydra_dataset_converted_externally_to_rlds": _converted_externally((240, 320), 27),
    # state: joints (7), gripper (1), EE pose (16).
    "austin_buds_dataset_converted_externally_to_rlds": _converted_externally((128, 128), 24),
}
OXE_SPECS["stanford_hydra_dataset_converted_externally_to_rlds"]["steps"]["is_dense"] = (
    "scalar", _BOOL)


def spec(name: str) -> dict[str, Any]:
  if name not in OXE_SPECS:
    raise KeyError(f"no on-disk feature spec for dataset '{name}' (known: {', '.join(OXE_SPECS)})")
  return OXE_SPECS[name]


def tfds_features(name_or_spec, image_size: tuple[int, int] | None = None,
                  image_format: str = "jpeg"):
  """`tfds.features.FeaturesDict` of an OXE dataset; `image_size` (h, w) overrides every camera."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def build(node, key=""):
    if isinstance(node, dict):
      return {k: build(v, k) for k, v in node.items()}
    node = _resized(node, key, image_size)
    kind = node[0]
    if kind == "image":
      return tfds.features.Image(shape=node[1], encoding_format=image_format)
    if kind == "text":
      return tfds.features.Text()
    if kind == "scalar":
      return tfds.features.Scalar(dtype=np.dtype(node[1]))
    if kind == "tensor":
      encoding = tfds.features.Encoding.ZLIB if len(node) > 3 and node[3] == "zlib" else (
          tfds.features.Encoding.NONE)
      return tfds.features.Tensor(shape=node[1], dtype=np.dtype(node[2]), encoding=encoding)
    raise ValueError(f"unknown leaf kind {kind!r}")

  tree = spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
  top = {}
  for key, value in tree.items():
    if key == "steps":
      top[key] = tfds.features.Dataset(_to_features_dict(build(value)))
    else:
      built = build(value)
      top[key] = _to_features_dict(built) if isinstance(built, dict) else built
  return tfds.features.FeaturesDict(top)


def _resized(leaf, key: str, image_size):
  """`leaf` with its spatial size replaced by `image_size` (images and depth maps only)."""
  if image_size is None:
    return leaf
  if leaf[0] == "image":
    return ("image", (*image_size, 3))
  if leaf[0] == "tensor" and "depth" in key and len(leaf[1]) >= 2:
    return ("tensor", (*image_size, *leaf[1][2:]), *leaf[2:])
  return leaf


def _to_features_dict(node):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if isinstance(node, dict):
    return tfds.features.FeaturesDict({k: _to_features_dict(v) for k, v in node.items()})
  return node


def random_episode(name_or_spec, length: int, rng: np.random.Generator,
                   image_size: tuple[int, int] | None = None) -> dict[str, Any]:
  """An episode of `length` steps with random values in the on-disk layout of `name_or_spec`.

  Images are random uint8, floats standard normal, bools False except the RLDS flags (is_first on
  step 0, is_last / is_terminal on the final step), texts "task <k>". Callers overwrite the fields a
  test checks.
  """
  tree = spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec

  def fill(node, per_step, key=""):
    if isinstance(node, dict):
      return {k: fill(v, per_step, k) for k, v in node.items()}
    node = _resized(node, key, image_size)
    lead = (length,) if per_step else ()
    kind = node[0]
    if kind == "image":
      return rng.integers(0, 256, size=(*lead, *node[1]), dtype=np.uint8)
    if kind == "text":
      text = f"task {int(rng.integers(0, 1000))}".encode()
      return [text] * length if per_step else text
    dtype = np.dtype(node[1] if kind == "scalar" else node[2])
    shape = () if kind == "scalar" else tuple(node[1])
    if dtype == np.bool_:
      return np.zeros((*lead, *shape), np.bool_)
    if np.issubdtype(dtype, np.integer):
      return rng.integers(0, 3, size=(*lead, *shape)).astype(dtype)
    return rng.standard_normal((*lead, *shape)).astype(dtype)

  episode = {k: fill(v, per_step=(k == "steps")) for k, v in tree.items()}
  steps = episode["steps"]
  steps["is_first"] = np.arange(length) == 0
  steps["is_last"] = np.arange(length) == length - 1
  steps["is_terminal"] = np.arange(length) == length - 1
  return episode
