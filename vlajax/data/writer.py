"""Write episodes as an RLDS dataset (tfds TFRecord layout) that `vlajax.data.rlds` reads back.

Episodes are plain numpy, as our environments produce them:

  {"observation": {"image": uint8[T, h, w, 3], "state": float32[T, n], ...},
   "action": float32[T, A],                # or a dict of arrays
   "reward": float32[T],                    # optional (zeros)
   "discount": float32[T],                  # optional (ones)
   "is_first"/"is_last"/"is_terminal": bool[T],  # optional: first / last step, terminal = last
   "language_instruction": str | bytes | list[str][T]}

or already in tfds form `{"steps": {...}, <episode-level fields>}`. Every step's action is the action
taken at that step (also on the last step). Features are inferred from the first episode (uint8
HxWx3 under `observation` -> `Image`, strings -> `Text`, other arrays -> `Tensor`) unless given.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import numpy as np

_RLDS_FLAGS = ("is_first", "is_last", "is_terminal")


def _as_steps(episode: Mapping[str, Any], fill_tfds_form: bool = True) -> dict[str, Any]:
  """Returns the tfds form `{"steps": {...}, ...}` of an episode, filling optional RLDS fields.

  An episode already in tfds form keeps its episode-level fields; its steps are filled too unless
  `fill_tfds_form` is False (explicit features describe exactly the fields given).
  """
  if "steps" in episode:
    return {**episode, **_as_steps(episode["steps"])} if fill_tfds_form else dict(episode)
  steps = dict(episode)
  if "action" not in steps or "observation" not in steps:
    raise KeyError(f"episode needs 'observation' and 'action' (has: {sorted(steps)})")
  length = _length(steps["action"])
  if length < 1:
    raise ValueError("episode has no steps")
  steps.setdefault("reward", np.zeros(length, np.float32))
  steps.setdefault("discount", np.ones(length, np.float32))
  steps.setdefault("is_first", np.arange(length) == 0)
  steps.setdefault("is_last", np.arange(length) == length - 1)
  steps.setdefault("is_terminal", np.arange(length) == length - 1)
  if "language_instruction" in steps:
    text = steps["language_instruction"]
    if isinstance(text, (str, bytes)):
      text = [text] * length
    steps["language_instruction"] = [t.encode() if isinstance(t, str) else bytes(t) for t in text]
  for key, value in _flatten(steps).items():
    if _length(value) != length:
      raise ValueError(f"episode field '{key}' has {_length(value)} steps, action has {length}")
  return {"steps": steps}


def _length(value) -> int:
  if isinstance(value, Mapping):
    return _length(next(iter(value.values())))
  return len(value)


def _flatten(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    path = f"{prefix}/{key}" if prefix else key
    if isinstance(value, Mapping):
      out.update(_flatten(value, path))
    else:
      out[path] = value
  return out


def infer_features(episode: Mapping[str, Any], image_format: str = "png"):
  """tfds features for an episode in tfds form (see module docstring for the rules)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def leaf(path: str, value, per_step: bool):
    if isinstance(value, (str, bytes)) or (isinstance(value, list) and value
                                           and isinstance(value[0], (str, bytes))):
      return tfds.features.Text()
    array = np.asarray(value)
    shape = array.shape[1:] if per_step else array.shape
    if array.dtype == np.uint8 and len(shape) == 3 and shape[-1] == 3 and "observation" in path:
      return tfds.features.Image(shape=shape, encoding_format=image_format)
    if array.dtype == np.float64:
      array = array.astype(np.float32)
    if shape == ():
      return tfds.features.Scalar(dtype=array.dtype)
    return tfds.features.Tensor(shape=shape, dtype=array.dtype)

  def build(tree, prefix, per_step):
    return tfds.features.FeaturesDict({
        k: build(v, f"{prefix}/{k}", per_step) if isinstance(v, Mapping) else
        leaf(f"{prefix}/{k}", v, per_step) for k, v in tree.items()})

  top = {}
  for key, value in episode.items():
    if key == "steps":
      top[key] = tfds.features.Dataset(build(value, "steps", per_step=True))
    elif isinstance(value, Mapping):
      top[key] = build(value, key, per_step=False)
    else:
      top[key] = leaf(key, value, per_step=False)
  return tfds.features.FeaturesDict(top)


def _cast_floats(tree):
  if isinstance(tree, Mapping):
    return {k: _cast_floats(v) for k, v in tree.items()}
  if isinstance(tree, np.ndarray) and tree.dtype == np.float64:
    return tree.astype(np.float32)
  return tree


def write_rlds(data_dir: str, name: str, splits: Mapping[str, Iterable[Mapping[str, Any]]],
               features=None, version: str = "0.1.0", num_shards: int | None = None,
               image_format: str = "png") -> str:
  """Writes `splits` ({"train": episodes, ...}) to `data_dir/name/version`; returns that directory.

  With `features` lacking a "steps" entry, records are written as given (one example each), which
  is how vision-language co-training data (image, prompt, answer) is stored.

  `num_shards` fixes the TFRecord file count per split (default: tfds decides by size; capped at
  the smallest split's episode count where the splits are sized: a generator's count is not
  known up front). Splits may be lists or any iterable of episodes (read once, one at a time). The result
  opens with `tfds.builder_from_directory` and with `vlajax.data.rlds.RldsSource`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  # A features dict without "steps" describes flat records (e.g. vision-language examples).
  flat = features is not None and "steps" not in features
  fill = features is None
  prepare = lambda ep: _cast_floats(dict(ep) if flat else _as_steps(ep, fill))
  # Each split is read once, lazily (a generator of episodes is never held in memory whole); its
  # first episode is prepared up front, to check the split is not empty and to infer features.
  firsts, counts = {}, {}
  for split, episodes in splits.items():
    counts[split] = len(episodes) if hasattr(episodes, "__len__") else None
    iterator = iter(episodes)
    try:
      firsts[split] = (prepare(next(iterator)), iterator)
    except StopIteration:
      raise ValueError(f"split '{split}' has no episodes") from None
  if features is None:
    features = infer_features(next(iter(firsts.values()))[0], image_format=image_format)

  def generate(split):
    first, rest = firsts[split]
    yield 0, first
    for index, episode in enumerate(rest, start=1):
      yield index, prepare(episode)

  attrs = {
      "name": name,
      "VERSION": tfds.core.Version(version),
      "_info": lambda self: tfds.core.DatasetInfo(builder=self, features=features),
      "_split_generators": lambda self, dl_manager: {
          split: generate(split) for split in firsts},
      "_generate_examples": lambda self, examples: examples,
  }
  builder_cls = type(f"RldsWriter_{name}", (tfds.core.GeneratorBasedBuilder,), attrs,
                     skip_registration=True)
  builder = builder_cls(data_dir=data_dir)
  if num_shards is not None:  # tfds needs at least one example per shard in every split
    known = [n for n in counts.values() if n is not None]
    num_shards = max(1, min([num_shards] + known))
  config = tfds.download.DownloadConfig(num_shards=num_shards)
  builder.download_and_prepare(download_config=config, file_format="tfrecord")
  return os.path.join(data_dir, name, version)
