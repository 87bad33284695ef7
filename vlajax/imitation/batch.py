"""`vlajax.data` batches -> the action heads' batches, checked against what the model needs.

  spec = BatchSpec(action_horizon=16, action_dim=7, proprio_dim=18,
                   image_keys=("image_primary", "image_wrist"), window=2)
  batch = from_data(loader.next_local(), spec, dataset="sim_arm_pick_cube")

Head batch (B = batch, T = `window`; with `window` 1 the T axis is dropped):
  obs["proprio"]        f32[B, (T,) P]         normalized proprioception, the first P dims
  obs[<image key>]      u8[B, (T,) h, w, 3]    each of `image_keys`
  actions               f32[B, H, A]           normalized chunk, the first A dims and H steps
  mask                  bool[B, H, A]          False past the episode end (and on padded dims)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class BatchSpec:
  action_horizon: int
  action_dim: int
  proprio_dim: int = 0                  # 0: no proprioception
  image_keys: tuple[str, ...] = ()
  window: int = 1                       # observation history

  def obs_keys(self) -> tuple[str, ...]:
    return (("proprio",) if self.proprio_dim else ()) + tuple(self.image_keys)


def from_data(batch: Mapping[str, Any], spec: BatchSpec, dataset: str = "the dataset") -> dict:
  """The head batch of a `DataLoader.next_local()` batch (module docstring); KeyError /
  ValueError naming the key, dimension or horizon the data lacks."""
  observation = batch.get("observation")
  if observation is None or "action" not in batch:
    raise KeyError(f"{dataset}: a data batch needs 'observation' and 'action' "
                   f"(has {sorted(batch)})")
  actions = np.asarray(batch["action"])
  mask = np.asarray(batch.get("action_pad_mask", np.ones(actions.shape, bool)))
  if actions.shape[1] < spec.action_horizon:
    raise ValueError(f"{dataset}: the model's action_horizon {spec.action_horizon} is longer "
                     f"than the data's chunk ({actions.shape[1]} steps: data.horizon)")
  real_dims = int(mask.any(axis=(0, 1)).sum()) if mask.size else 0
  if real_dims != spec.action_dim:
    raise ValueError(f"{dataset}: the data's actions have {real_dims} dimensions, the model's "
                     f"action_dim is {spec.action_dim}")
  obs = {}
  if spec.proprio_dim:
    proprio = np.asarray(observation["proprio"])
    real = int(np.asarray(observation["proprio_mask"]).any(axis=(0, 1)).sum())
    if real < spec.proprio_dim:
      raise ValueError(f"{dataset}: the data's proprio has {real} dimensions, the model reads "
                       f"proprio_dim {spec.proprio_dim}")
    obs["proprio"] = proprio[:, -spec.window:, :spec.proprio_dim]
  for key in spec.image_keys:
    if key not in observation:
      raise KeyError(f"{dataset}: the model reads observation '{key}', the data has "
                     f"{sorted(observation)}")
    mask_key = key.removeprefix("image_")
    present = observation.get("image_mask", {}).get(mask_key)
    if present is not None and not np.asarray(present).any():
      raise KeyError(f"{dataset}: the model reads camera '{key}', which the dataset does not have")
    obs[key] = np.asarray(observation[key])[:, -spec.window:]
  if observation.get("timestep_pad_mask") is not None and spec.window > 1:
    obs["timestep_pad_mask"] = np.asarray(observation["timestep_pad_mask"])[:, -spec.window:]
  if spec.window == 1:
    obs = {k: v[:, 0] for k, v in obs.items()}
  return {"obs": obs,
          "actions": actions[:, :spec.action_horizon, :spec.action_dim].astype(np.float32),
          "mask": mask[:, :spec.action_horizon, :spec.action_dim]}
