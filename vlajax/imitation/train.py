"""The training state, optimizer and jitted steps shared by every chunk policy (heads and the VLA).

A *model* is a Flax module with the action-head protocol of `vlajax.policies.base`:

  compute_loss(obs, actions (B, H, A), rng, mask=None) -> (scalar loss, per-example (B,) loss)
  sample_actions(obs, rng, **sample_kwargs) -> (B, H, A)

and a *batch* is `{"obs": {...}, "actions": f32[B, H, A], "mask": bool[B, H, A]}`
(`imitation.batch.from_data`; the VLA's `vla.batch.to_head_batch`). `build_trainer` makes the
jitted init, train step (AdamW with a warmup-cosine schedule, global-norm clipping, gradient
accumulation over equal micro-batches, frozen parameters by path, EMA of the weights with a
warm-up) and eval step. Placement follows the mesh (`core.mesh`): the batch is split over its
`data` and `fsdp` axes and the state is FSDP-sharded over `fsdp` (replicated without one).

Hooks for models that need more than the protocol (the VLA): `is_frozen` (a path predicate:
frozen leaves get no gradient, no update, no moments, and their EMA is the leaf itself),
`cast_params` (applied to fresh and given parameters, e.g. frozen leaves stored in bfloat16),
`loss_fn` (returns the loss and named parts that are logged, e.g. a text loss) and
`sample_kwargs` (extra arguments of `sample_actions`, e.g. the number of integration steps).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vlajax.core import mesh as mesh_lib


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray          # int32 scalar: optimizer steps taken
  params: Any
  opt_state: Any
  ema_params: Any            # the params' EMA (same tree), or None with EMA off
  rng: jnp.ndarray           # uint32 (2,)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW + linear warmup + cosine decay to `end_lr`; the defaults are Diffusion Policy's recipe
  (lr 1e-4 -> 1e-6, betas (0.9, 0.95), weight decay 0.05, EMA of the weights)."""
  peak_lr: float = 1e-4
  end_lr: float = 1e-6
  warmup_steps: int = 500
  decay_steps: int = 20_000
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 0.05
  grad_clip: float = 1.0
  ema_decay: float | None = 0.999
  grad_accum: int = 1


def optim_config(section) -> OptimConfig:
  """The `OptimConfig` of a config's `optim` section (a ConfigDict or dict with its fields;
  `ema_decay` 0 = EMA off)."""
  values = dict(section)
  values["ema_decay"] = values["ema_decay"] or None
  return OptimConfig(**values)


def path_str(path) -> str:
  """'params/encoder/Dense_0/kernel' for a pytree key path."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def frozen_mask(params: Any, is_frozen: Callable[[str], bool] | None) -> Any:
  """Tree of bools (True = frozen) matching `params`, from a predicate on the path string."""
  if is_frozen is None:
    return jax.tree.map(lambda _: False, params)
  return jax.tree_util.tree_map_with_path(lambda path, _: bool(is_frozen(path_str(path))), params)


def make_schedule(cfg: OptimConfig) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.peak_lr, warmup_steps=cfg.warmup_steps,
      decay_steps=max(cfg.decay_steps, cfg.warmup_steps + 1), end_value=cfg.end_lr)


def make_optimizer(cfg: OptimConfig, params: Any,
                   is_frozen: Callable[[str], bool] | None = None) -> optax.GradientTransformation:
  """Global-norm clip + AdamW on trainable params; frozen ones get zero updates and no moments."""
  tx = optax.chain(
      optax.clip_by_global_norm(cfg.grad_clip),
      optax.adamw(make_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                  weight_decay=cfg.weight_decay))
  if is_frozen is None:
    return tx
  labels = jax.tree.map(lambda f: "frozen" if f else "train", frozen_mask(params, is_frozen))
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


LossFn = Callable[[Any, Any, dict, jax.Array], tuple[jax.Array, dict]]


class Trainer(NamedTuple):
  """The jitted pieces of one (model, optimizer, mesh, hooks) combination."""
  tx: optax.GradientTransformation
  mesh: Mesh
  shardings: Any                                          # TrainState of NamedSharding
  init: Callable[[jax.Array], TrainState]                 # seed key -> fresh state
  init_from: Callable[[Any, jax.Array], TrainState]       # (params, seed key) -> state
  step: Callable[[TrainState, dict], tuple[TrainState, dict]]
  evaluate: Callable[[Any, dict, jax.Array], dict]        # (params, batch, rng) -> metrics
  sample: Callable[[Any, dict, jax.Array], jax.Array]     # (params, obs, rng) -> (B, H, A)


def protocol_loss(model, params, batch: dict, rng) -> tuple[jax.Array, dict]:
  """The default `loss_fn`: the protocol's `compute_loss` on a head batch, no named parts."""
  loss, _ = model.apply(params, batch["obs"], batch["actions"], rng, batch.get("mask"),
                        method=model.compute_loss)
  return loss, {}


def build_trainer(model, cfg: OptimConfig, example: dict, mesh: Mesh, *,
                  is_frozen: Callable[[str], bool] | None = None,
                  cast_params: Callable[[Any], Any] | None = None,
                  loss_fn: LossFn | None = None, sample_kwargs: dict | None = None,
                  min_shard_size: int = 1024) -> Trainer:
  """Jitted init / init_from / step / evaluate / sample for `model` on batches like `example`.

  Args:
    model: a module with the action-head protocol (module docstring).
    cfg: optimizer, schedule, EMA and gradient accumulation.
    example: a head batch (any batch size) the model is initialized on.
    mesh: batches are split over its `data` / `fsdp` axes, the state FSDP-sharded over `fsdp`.
    is_frozen: `path -> bool` on 'params/encoder/Dense_0/kernel'-style paths; None: all train.
    cast_params: `params -> params` applied by `init` and `init_from` before the optimizer state
      is made (e.g. frozen leaves stored in the compute dtype).
    loss_fn: `(model, params, batch, rng) -> (scalar loss, {name: scalar})`; the parts are
      logged beside the loss. Default `protocol_loss`.
    sample_kwargs: keyword arguments of `model.sample_actions` (e.g. `{"num_steps": 10}`).
    min_shard_size: leaves with fewer entries stay replicated under FSDP.
  """
  loss_fn = loss_fn or protocol_loss
  sample_kwargs = dict(sample_kwargs or {})
  init_key = jax.random.PRNGKey(0)
  abstract_params = jax.eval_shape(lambda r: model.init(r, example["obs"], example["actions"], r,
                                                        method=model.compute_loss), init_key)
  tx = make_optimizer(cfg, abstract_params, is_frozen)
  frozen = frozen_mask(abstract_params, is_frozen)
  any_frozen = any(jax.tree.leaves(frozen))
  schedule = make_schedule(cfg)
  accum = cfg.grad_accum

  def from_params(params, key):
    if cast_params is not None:
      params = cast_params(params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema_params=params if cfg.ema_decay else None,
                      rng=jax.random.fold_in(key, 1))

  def fresh(key):
    return from_params(model.init(jax.random.fold_in(key, 0), example["obs"], example["actions"],
                           jax.random.fold_in(key, 2), method=model.compute_loss), key)

  shardings = mesh_lib.fsdp_shardings(jax.eval_shape(fresh, init_key), mesh,
                                      min_size=min_shard_size)

  def loss_of(params, batch, rng):
    if any_frozen:
      params = jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, frozen)
    return loss_fn(model, params, batch, rng)

  grad_fn = jax.value_and_grad(loss_of, has_aux=True)

  def step(state: TrainState, batch: dict):
    rng, step_rng = jax.random.split(state.rng)
    if accum == 1:
      (loss, parts), grads = grad_fn(state.params, batch, step_rng)
    else:
      micro = jax.tree.map(lambda x: _micro_batches(x, accum), batch)

      def body(carry, xs):
        mb, i = xs
        (loss_i, parts_i), grads_i = grad_fn(state.params, mb, jax.random.fold_in(step_rng, i))
        return jax.tree.map(jnp.add, carry, (loss_i, parts_i, grads_i)), None

      first = jax.tree.map(lambda x: x[0], micro)
      zero_parts = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(
          lambda: loss_of(state.params, first, step_rng)[1]))
      zeros = (jnp.zeros((), jnp.float32), zero_parts,
               jax.tree.map(jnp.zeros_like, state.params))
      (loss, parts, grads), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
      loss, parts, grads = jax.tree.map(lambda x: x / accum, (loss, parts, grads))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:   # frozen leaves: the EMA is the (unchanging) leaf itself
      d = ema_decay_at(cfg.ema_decay, state.step)
      ema = jax.tree.map(lambda e, p, f: p if f else (d * e + (1.0 - d) * p).astype(e.dtype),
                         ema, params, frozen)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "lr": schedule(state.step),
               "param_norm": optax.global_norm(params), **parts}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         ema_params=ema, rng=rng), metrics

  def sample(params, obs, rng):
    return model.apply(params, obs, rng, method=model.sample_actions, **sample_kwargs)

  def evaluate(params, batch, rng):
    loss_rng, sample_rng = jax.random.split(rng)
    loss, _ = loss_fn(model, params, batch, loss_rng)
    sampled = sample(params, batch["obs"], sample_rng)
    weights = jnp.broadcast_to(batch.get("mask", True), sampled.shape).astype(jnp.float32)
    err = sampled - batch["actions"]
    total = jnp.maximum(weights.sum(), 1.0)
    return {"eval_loss": loss, "sampled_action_mse": jnp.sum(err ** 2 * weights) / total,
            "sampled_action_mae": jnp.sum(jnp.abs(err) * weights) / total}

  replicated = NamedSharding(mesh, P())
  batch_sharding = mesh_lib.batch_sharding(mesh)
  return Trainer(
      tx, mesh, shardings,
      jax.jit(fresh, out_shardings=shardings),
      jax.jit(from_params, out_shardings=shardings),
      jax.jit(step, in_shardings=(shardings, batch_sharding),
              out_shardings=(shardings, replicated), donate_argnums=0),
      jax.jit(evaluate, in_shardings=(shardings.params, batch_sharding, replicated)),
      jax.jit(sample))


def ema_decay_at(decay: float, step) -> jnp.ndarray:
  """The EMA decay at optimizer step `step`: `min(decay, (1 + step) / (10 + step))`, the warm-up
  of `tf.train.ExponentialMovingAverage` (a fixed 0.999 would keep 13% of the initial weights
  after 2,000 steps, and a policy's outputs shrink toward the untrained ones)."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def _micro_batches(x, accum: int):
  b = x.shape[0]
  if b % accum:
    raise ValueError(f"batch size {b} is not divisible by grad_accum={accum}")
  # Row r goes to micro-batch r % accum: each device's rows stay on that device.
  return x.reshape((b // accum, accum) + x.shape[1:]).swapaxes(0, 1)
