"""The VLA's side of training: what `vlajax.imitation`'s trainer needs beyond the head protocol.

The trainer, optimizer, EMA, sharding and loop are `vlajax.imitation`'s (`experiments/train_vla.py`
puts them together); this module holds the VLA-only pieces it is given as hooks:

* freezing: `FREEZE_OPTIONS`, `frozen_predicate(freeze)` (a path predicate for the trainer's
  `is_frozen`) and `cast_frozen` (frozen leaves stored in bfloat16 under bfloat16 compute);
* `loss_fn`: the training loss of a head batch (`vla.batch.to_head_batch`) with its parts
  (`action_loss`, and `text_loss` when the co-training text loss is on) for the metrics;
* `make_sampler`: jitted KV-cached (or full) Euler sampling of action chunks.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from vlajax.vla.pi0 import Pi0

FREEZE_OPTIONS = ("none", "vision", "vision_llm")


def is_frozen(path: str, freeze: str) -> bool:
  """Whether the parameter at ``path`` ('params/vision/...') is frozen under ``freeze``.

  ``vision``: the ViT (not its projection into the LM, ``vision/head``).
  ``vision_llm``: the ViT, the token embedding and every expert-0 (language model) weight; the
  action expert, the vision projection and the state/action projections train.
  """
  if freeze not in FREEZE_OPTIONS:
    raise ValueError(f"unknown freeze option {freeze!r}; choose one of {FREEZE_OPTIONS}")
  parts = path.split("/")
  if freeze == "none":
    return False
  in_vit = "vision" in parts and "head" not in parts
  if freeze == "vision":
    return in_vit
  in_llm = "decoder" in parts and ("embedder" in parts or any(p.endswith("_0") for p in parts))
  return in_vit or in_llm


def frozen_predicate(freeze: str) -> Callable[[str], bool] | None:
  """``path -> frozen?`` under ``freeze`` for the trainer's ``is_frozen``; None for "none" (no
  masked optimizer at all). Raises ValueError naming an unknown option."""
  is_frozen("", freeze)   # validates
  return None if freeze == "none" else functools.partial(is_frozen, freeze=freeze)


def cast_frozen(params: Any, freeze: str, compute_dtype) -> Any:
  """Stores frozen parameters in the compute dtype when it is bfloat16 (they are only ever read in
  that dtype, so this halves their memory); trainable ones stay float32 master weights."""
  if freeze == "none" or jnp.dtype(compute_dtype) != jnp.bfloat16:
    return params

  def cast(path, p):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    return p.astype(jnp.bfloat16) if is_frozen(name, freeze) else p
  return jax.tree_util.tree_map_with_path(cast, params)


def loss_fn(model: Pi0, params: Any, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
  """``(scalar loss, parts)`` of a head batch (``{"obs", "actions", "mask"}``, ``obs`` the model
  batch's observation fields and ``text_target_mask``): ``Pi0.compute_losses``' total, and its
  ``action_loss`` / ``text_loss`` when the text loss is on (else no parts: the loss is the action
  loss)."""
  model_batch = dict(batch["obs"], actions=batch["actions"])
  if batch.get("mask") is not None:
    model_batch["action_mask"] = batch["mask"]
  losses = model.apply(params, model_batch, rng, method=Pi0.compute_losses)
  parts = {k: losses[k] for k in ("action_loss", "text_loss") if "text_loss" in losses}
  return losses["loss"], parts


@functools.lru_cache(maxsize=8)
def make_sampler(model: Pi0, num_steps: int = 10, use_kv_cache: bool = True):
  """Jitted ``(params, obs, rng) -> (B, H, A)`` action chunks."""
  return jax.jit(lambda params, obs, rng: model.apply(
      params, obs, rng, num_steps, use_kv_cache, method=Pi0.sample_actions))
