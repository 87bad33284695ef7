"""Training state, optimizer, freezing and jitted train / eval steps for the pi0-style VLA.

The state is sharded FSDP-style over the mesh's ``fsdp`` axis and batches over ``data`` x ``fsdp``
(``vlajax.vla.sharding``); ``jax.jit`` with explicit in/out shardings does the rest, so the same code
runs on one device, many devices and many hosts.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vlajax.policies import flow_matching as fm
from vlajax.vla import batch as batch_lib
from vlajax.vla import sharding as sharding_lib
from vlajax.vla.pi0 import Pi0

FREEZE_OPTIONS = ("none", "vision", "vision_llm")


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray          # int32 scalar, optimizer steps taken
  # {"params": ...} of ``Pi0``; float32, except frozen leaves under bfloat16 compute, which are
  # stored in bfloat16 (``cast_frozen``).
  params: Any
  opt_state: Any
  ema_params: Any            # same tree as params, or None when EMA is off
  rng: jnp.ndarray           # uint32 (2,) raw key


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW + warmup-cosine; defaults follow openpi's pi0 fine-tuning recipe."""
  peak_lr: float = 2.5e-5
  end_lr: float = 2.5e-6
  warmup_steps: int = 1000
  decay_steps: int = 30_000
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 1e-10
  grad_clip: float = 1.0
  ema_decay: float | None = 0.99
  grad_accum: int = 1


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


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


def frozen_mask(params: Any, freeze: str) -> Any:
  """Tree of bools (True = frozen) matching ``params``."""
  return jax.tree_util.tree_map_with_path(lambda path, _: is_frozen(_path_str(path), freeze), params)


def cast_frozen(params: Any, freeze: str, compute_dtype) -> Any:
  """Stores frozen parameters in the compute dtype when it is bfloat16 (they are only ever read in
  that dtype, so this halves their memory); trainable ones stay float32 master weights."""
  if freeze == "none" or jnp.dtype(compute_dtype) != jnp.bfloat16:
    return params
  return jax.tree.map(lambda p, f: p.astype(jnp.bfloat16) if f else p, params, frozen_mask(params, freeze))


def make_schedule(cfg: OptimConfig) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.peak_lr, warmup_steps=cfg.warmup_steps,
      decay_steps=max(cfg.decay_steps, cfg.warmup_steps + 1), end_value=cfg.end_lr)


def make_optimizer(cfg: OptimConfig, params: Any, freeze: str = "none") -> optax.GradientTransformation:
  """Global-norm clip + AdamW on trainable params; frozen params get zero updates and no moments."""
  tx = optax.chain(
      optax.clip_by_global_norm(cfg.grad_clip),
      optax.adamw(make_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
  if freeze == "none":
    return tx
  labels = jax.tree.map(lambda f: "frozen" if f else "train", frozen_mask(params, freeze))
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def _example_batch(model: Pi0) -> dict:
  return batch_lib.zeros_batch(model.config, 1)


class Trainer(NamedTuple):
  """Compiled pieces for one (model, optimizer, mesh, freeze) combination."""
  tx: optax.GradientTransformation
  shardings: Any                                   # NamedSharding tree of TrainState
  init: Callable[[jax.Array], TrainState]          # seed key -> fresh sharded state
  init_from: Callable[[Any, jax.Array], TrainState]  # (params, seed key) -> sharded state
  step: Callable[[TrainState, dict], tuple[TrainState, dict]]


@functools.lru_cache(maxsize=8)
def build_trainer(model: Pi0, cfg: OptimConfig, mesh: Mesh, freeze: str = "none",
                  min_shard_size: int = 1024) -> Trainer:
  """Builds (once per distinct argument set, so repeated runs reuse compilations) the optimizer,
  the state shardings and the jitted init / train-step functions."""
  example = _example_batch(model)
  abstract_params = jax.eval_shape(lambda r: model.init(r, example, r), jax.random.PRNGKey(0))
  tx = make_optimizer(cfg, abstract_params, freeze)

  def wrap(params, key):
    params = cast_frozen(params, freeze, model.config.compute_dtype)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema_params=params if cfg.ema_decay else None, rng=jax.random.fold_in(key, 1))

  def fresh(key):
    init_key = jax.random.fold_in(key, 0)
    return wrap(model.init(init_key, example, init_key), key)

  abstract = jax.eval_shape(fresh, jax.random.PRNGKey(0))
  shardings = sharding_lib.state_shardings(abstract, mesh, min_size=min_shard_size)
  step = make_train_step(model, cfg, tx, shardings, mesh, freeze)
  return Trainer(tx, shardings, jax.jit(fresh, out_shardings=shardings),
                 jax.jit(wrap, out_shardings=shardings), step)


def create_train_state(model: Pi0, cfg: OptimConfig, seed: int, mesh: Mesh, freeze: str = "none",
                       min_shard_size: int = 1024, params: Any | None = None) -> tuple[TrainState, Trainer]:
  """A fresh (or ``params``-initialized) train state placed directly in its sharded layout."""
  trainer = build_trainer(model, cfg, mesh, freeze, min_shard_size)
  key = jax.random.PRNGKey(seed)
  state = trainer.init(key) if params is None else trainer.init_from(params, key)
  return state, trainer


def _stop_frozen(params, mask):
  return jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, mask)


def make_train_step(model: Pi0, cfg: OptimConfig, tx: optax.GradientTransformation, state_shardings: Any,
                    mesh: Mesh, freeze: str = "none") -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """Jitted ``(state, batch) -> (state, metrics)`` with gradient accumulation over ``grad_accum``
  equal micro-batches (the mean of micro-batch losses; equal to the full-batch loss when every
  micro-batch has the same number of valid action entries)."""
  schedule = make_schedule(cfg)
  accum = cfg.grad_accum

  def loss_fn(params, batch, rng):
    if freeze != "none":
      params = _stop_frozen(params, frozen_mask(params, freeze))
    losses = model.apply(params, batch, rng, method=Pi0.compute_losses)
    parts = {k: losses[k] for k in ("action_loss", "text_loss") if k in losses and "text_loss" in losses}
    return losses["loss"], parts

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, batch: dict):
    rng, step_rng = jax.random.split(state.rng)
    if accum == 1:
      (loss, parts), grads = grad_fn(state.params, batch, step_rng)
    else:
      def split(x):
        b = x.shape[0]
        if b % accum:
          raise ValueError(f"batch size {b} is not divisible by grad_accum={accum}")
        return x.reshape((b // accum, accum) + x.shape[1:]).swapaxes(0, 1)
      micro = jax.tree.map(split, batch)

      def body(carry, xs):
        mb, i = xs
        (l, p), g = grad_fn(state.params, mb, jax.random.fold_in(step_rng, i))
        return jax.tree.map(jnp.add, carry, (l, p, g)), None

      zero_parts = jax.tree.map(jnp.zeros_like, jax.eval_shape(
          lambda: loss_fn(state.params, jax.tree.map(lambda x: x[0], micro), step_rng)[1]))
      zeros = (jnp.zeros((), jnp.float32), zero_parts, jax.tree.map(jnp.zeros_like, state.params))
      (loss, parts, grads), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
      loss, parts, grads = jax.tree.map(lambda x: x / accum, (loss, parts, grads))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:   # frozen leaves: the EMA is the (unchanging) parameter itself
      d = cfg.ema_decay
      ema = jax.tree.map(lambda e, p, f: p if f else d * e + (1.0 - d) * p, ema, params,
                         frozen_mask(params, freeze))
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "lr": schedule(state.step),
               "param_norm": optax.global_norm(params), **parts}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema,
                         rng=rng), metrics

  batch_sharding = sharding_lib.batch_sharding(mesh)
  replicated = NamedSharding(mesh, P())
  return jax.jit(step, in_shardings=(state_shardings, batch_sharding),
                 out_shardings=(state_shardings, replicated), donate_argnums=0)


@functools.lru_cache(maxsize=8)
def make_eval_step(model: Pi0, num_steps: int = 10) -> Callable[[Any, dict, jax.Array], dict]:
  """Jitted ``(params, batch, rng) -> {eval_loss, sampled_action_mse, sampled_action_mae}``: the
  flow-matching loss and the error of KV-cached sampled chunks against the targets (valid entries)."""

  def evaluate(params, batch, rng):
    loss_rng, sample_rng = jax.random.split(rng)
    loss, _ = model.apply(params, batch, loss_rng)
    obs = {k: batch[k] for k in batch_lib.OBSERVATION_KEYS + ("text_target_mask",) if k in batch}
    sampled = model.apply(params, obs, sample_rng, num_steps, method=Pi0.sample_actions)
    mask = batch_lib.loss_mask(batch)
    mse, _ = fm.masked_mse(sampled, batch["actions"], mask)
    weights = jnp.ones(sampled.shape) if mask is None else jnp.broadcast_to(mask, sampled.shape)
    mae = jnp.sum(jnp.abs(sampled - batch["actions"]) * weights) / jnp.maximum(weights.sum(), 1.0)
    return {"eval_loss": loss, "sampled_action_mse": mse, "sampled_action_mae": mae}

  return jax.jit(evaluate)


@functools.lru_cache(maxsize=8)
def make_sampler(model: Pi0, num_steps: int = 10, use_kv_cache: bool = True):
  """Jitted ``(params, obs, rng) -> (B, H, A)`` action chunks."""
  return jax.jit(lambda params, obs, rng: model.apply(
      params, obs, rng, num_steps, use_kv_cache, method=Pi0.sample_actions))
