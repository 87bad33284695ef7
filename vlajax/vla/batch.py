"""The VLA model's batch format, its validation, and conversion from ``vlajax.data`` batches.

Model batch (B = batch, C = cameras, S = image size, L = ``max_token_len``, H = ``action_horizon``,
A = ``action_dim``):
  images          float32 (B, C, S, S, 3) in [-1, 1]
  image_mask      bool    (B, C)          False = camera absent
  tokens          int32   (B, L)
  token_mask      bool    (B, L)          False = padding
  state           float32 (B, state_dim)
  actions         float32 (B, H, A)       (training / evaluation only)
  action_mask     bool    (B, H) or (B, H, A)  False on padded steps / dims (optional)
  action_dim_mask bool    (B, A)          False on padded action dims (optional)
  text_target_mask bool   (B, L)          True on text tokens trained by next-token prediction
                                          (co-training text loss; optional, all False = none)
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from vlajax.vla.config import Pi0Config

OBSERVATION_KEYS = ("images", "image_mask", "tokens", "token_mask", "state")


def expected_shapes(config: Pi0Config, batch_size: int) -> dict[str, tuple[int, ...]]:
  c, b, s = config, batch_size, config.vision.image_size
  return {
      "images": (b, c.num_cameras, s, s, 3), "image_mask": (b, c.num_cameras),
      "tokens": (b, c.max_token_len), "token_mask": (b, c.max_token_len), "state": (b, c.state_dim),
      "actions": (b, c.action_horizon, c.action_dim),
  }


def validate_batch(batch: Mapping[str, Any], config: Pi0Config, require_actions: bool = True) -> int:
  """Checks keys and shapes; raises KeyError / ValueError naming the field. Returns the batch size."""
  needed = OBSERVATION_KEYS + (("actions",) if require_actions else ())
  missing = [k for k in needed if k not in batch]
  if missing:
    raise KeyError(f"VLA batch is missing field(s) {missing}; it has {sorted(batch)}")
  b = int(np.shape(batch["state"])[0])
  for key, shape in expected_shapes(config, b).items():
    if key in batch and tuple(np.shape(batch[key])) != shape:
      raise ValueError(f"VLA batch field {key!r} has shape {tuple(np.shape(batch[key]))}, expected {shape}")
  if "text_target_mask" in batch and tuple(np.shape(batch["text_target_mask"])) != (b, config.max_token_len):
    raise ValueError(f"VLA batch field 'text_target_mask' has shape {tuple(np.shape(batch['text_target_mask']))}, "
                     f"expected {(b, config.max_token_len)}")
  if "action_mask" in batch:
    shape = tuple(np.shape(batch["action_mask"]))
    if shape not in ((b, config.action_horizon), (b, config.action_horizon, config.action_dim)):
      raise ValueError(f"VLA batch field 'action_mask' has shape {shape}, expected "
                       f"{(b, config.action_horizon)} or {(b, config.action_horizon, config.action_dim)}")
  return b


def loss_mask(batch: Mapping[str, Any]) -> jnp.ndarray | None:
  """Combined (B, H, A)-broadcastable float mask from ``action_mask`` and ``action_dim_mask``."""
  mask = None
  if "action_mask" in batch:
    mask = jnp.asarray(batch["action_mask"], jnp.float32)
    if mask.ndim == 2:
      mask = mask[:, :, None]
  if "action_dim_mask" in batch:
    dims = jnp.asarray(batch["action_dim_mask"], jnp.float32)[:, None, :]
    mask = dims if mask is None else mask * dims
  return mask


def to_head_batch(batch: Mapping[str, Any]) -> dict:
  """A model batch -> the action-head batch that ``vlajax.imitation`` trains on (host numpy):

    obs      the ``OBSERVATION_KEYS`` fields, and ``text_target_mask`` when the batch has one
    actions  float32 (B, H, A)
    mask     bool (B, H, A): ``action_mask`` x ``action_dim_mask`` (all True without them)
  """
  obs = {k: np.asarray(batch[k]) for k in OBSERVATION_KEYS + ("text_target_mask",) if k in batch}
  actions = np.asarray(batch["actions"], np.float32)
  mask = loss_mask(batch)
  mask = np.ones(actions.shape, bool) if mask is None else np.broadcast_to(
      np.asarray(mask) > 0, actions.shape).copy()
  return {"obs": obs, "actions": actions, "mask": mask}


def _fit_last_dim(x, size: int) -> np.ndarray:
  """Zero-pads or truncates the last dimension to ``size``."""
  x = np.asarray(x)
  if x.shape[-1] >= size:
    return x[..., :size]
  pad = [(0, 0)] * (x.ndim - 1) + [(0, size - x.shape[-1])]
  return np.pad(x, pad)


def from_standardized(data_batch: Mapping[str, Any], config: Pi0Config,
                      tokenize: Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]],
                      cameras: Sequence[str] = ("primary", "wrist")) -> dict[str, np.ndarray]:
  """Converts this host's rows of a ``vlajax.data`` standardized batch (``DataLoader.next_local()``,
  numpy; format in the ``vlajax.data`` docstring) into a host-local model batch.

  Uses the last step of the observation history and the first ``config.num_cameras`` of
  ``cameras``; zero-pads / truncates proprio and actions to ``state_dim`` / ``action_dim``; tokenizes
  the instructions with ``tokenize(list[str]) -> (tokens (B, L), mask (B, L))``. Rows with
  ``is_robot == False`` (vision-language co-training rows) get an all-False action mask. When the
  batch has ``answer`` texts, each non-empty answer follows its prompt as a text target
  (``text_target_mask``, trained by the co-training text loss); that needs a tokenizer with
  ``with_targets`` (``vlajax.vla.tokenizer``).
  """
  obs = data_batch["observation"]
  cams = list(cameras)[:config.num_cameras]
  size = (config.vision.image_size, config.vision.image_size, 3)
  images, image_mask = [], []
  for cam in cams:
    key = f"image_{cam}"
    if key not in obs:
      raise KeyError(f"data batch has no observation field {key!r} (has {sorted(obs)})")
    img = np.asarray(obs[key])[:, -1]
    if img.shape[1:] != size:
      raise ValueError(f"observation {key!r} images are {img.shape[1:]}; the model expects {size} "
                       "(set the data config's image_size)")
    images.append(img.astype(np.float32) / 127.5 - 1.0)
    image_mask.append(np.asarray(obs["image_mask"][cam])[:, -1])
  proprio = np.asarray(obs["proprio"])[:, -1] * np.asarray(obs["proprio_mask"])[:, -1]
  instructions = [s.decode() if isinstance(s, bytes) else str(s) for s in np.asarray(data_batch["instruction"])]
  text_target_mask = None
  if "answer" in data_batch:
    answers = [a.decode() if isinstance(a, bytes) else str(a) for a in np.asarray(data_batch["answer"])]
    if any(answers) and not hasattr(tokenize, "with_targets"):
      raise TypeError("the data batch has 'answer' text targets but the tokenizer has no with_targets()")
  if "answer" in data_batch and hasattr(tokenize, "with_targets"):
    tokens, token_mask, text_target_mask = tokenize.with_targets(instructions, answers)
  else:
    tokens, token_mask = tokenize(instructions)
  action_mask = _fit_last_dim(np.asarray(data_batch["action_pad_mask"], bool), config.action_dim)
  if "is_robot" in data_batch:
    action_mask = action_mask & np.asarray(data_batch["is_robot"], bool)[:, None, None]
  out = {
      "images": np.stack(images, axis=1), "image_mask": np.stack(image_mask, axis=1).astype(bool),
      "tokens": np.asarray(tokens, np.int32), "token_mask": np.asarray(token_mask, bool),
      "state": _fit_last_dim(proprio, config.state_dim).astype(np.float32),
      "actions": _fit_last_dim(np.asarray(data_batch["action"], np.float32), config.action_dim),
      "action_mask": action_mask.astype(bool),
  }
  if text_target_mask is not None:
    out["text_target_mask"] = np.asarray(text_target_mask, bool)
  return out


def zeros_batch(config: Pi0Config, batch_size: int = 1) -> dict[str, np.ndarray]:
  """An all-zeros batch of the right shapes and dtypes (for initialization and shape checks), with an
  all-False ``text_target_mask``."""
  dtypes = {"image_mask": bool, "token_mask": bool, "tokens": np.int32}
  batch = {k: np.zeros(s, dtypes.get(k, np.float32)) for k, s in expected_shapes(config, batch_size).items()}
  batch["text_target_mask"] = np.zeros((batch_size, config.max_token_len), bool)
  return batch
