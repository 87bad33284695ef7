"""The training state, optimizer and jitted steps shared by every chunk policy.

A *model* is a Flax module with the action-head protocol of `vlajax.policies.base`:

  compute_loss(obs, actions (B, H, A), rng, mask=None) -> (scalar loss, per-example (B,) loss)
  sample_actions(obs, rng) -> (B, H, A)

and a *batch* is `{"obs": {...}, "actions": f32[B, H, A], "mask": bool[B, H, A]}`
(`imitation.batch.from_data`). `build_trainer` makes the jitted init, train step (AdamW with a
warmup-cosine schedule, global-norm clipping, gradient accumulation over equal micro-batches,
frozen parameters by path, EMA of the weights) and eval step, with the batch sharded over the
mesh's `data` axis and the state replicated.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


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


def path_str(path) -> str:
  """'params/encoder/Dense_0/kernel' for a pytree key path."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


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


class Trainer(NamedTuple):
  """The jitted pieces of one (model, optimizer, mesh) combination."""
  tx: optax.GradientTransformation
  init: Callable[[jax.Array], TrainState]                 # seed key -> fresh state
  step: Callable[[TrainState, dict], tuple[TrainState, dict]]
  evaluate: Callable[[Any, dict, jax.Array], dict]        # (params, batch, rng) -> metrics
  sample: Callable[[Any, dict, jax.Array], jax.Array]     # (params, obs, rng) -> (B, H, A)


def _loss(model, params, batch, rng):
  return model.apply(params, batch["obs"], batch["actions"], rng, batch.get("mask"),
                     method=model.compute_loss)


def build_trainer(model, cfg: OptimConfig, example: dict, mesh: Mesh,
                  is_frozen: Callable[[str], bool] | None = None) -> Trainer:
  """Jitted init / step / evaluate / sample for `model` on batches shaped like `example`."""
  init_key = jax.random.PRNGKey(0)
  abstract = jax.eval_shape(lambda r: model.init(r, example["obs"], example["actions"], r,
                                                 method=model.compute_loss), init_key)
  tx = make_optimizer(cfg, abstract, is_frozen)
  schedule = make_schedule(cfg)
  accum = cfg.grad_accum
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))

  def init(key):
    params = model.init(jax.random.fold_in(key, 0), example["obs"], example["actions"],
                        jax.random.fold_in(key, 2), method=model.compute_loss)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema_params=params if cfg.ema_decay else None,
                      rng=jax.random.fold_in(key, 1))

  grad_fn = jax.value_and_grad(lambda p, b, r: _loss(model, p, b, r)[0])

  def step(state: TrainState, batch: dict):
    rng, step_rng = jax.random.split(state.rng)
    if accum == 1:
      loss, grads = grad_fn(state.params, batch, step_rng)
    else:
      micro = jax.tree.map(lambda x: _micro_batches(x, accum), batch)

      def body(carry, xs):
        mb, i = xs
        loss_i, grads_i = grad_fn(state.params, mb, jax.random.fold_in(step_rng, i))
        return jax.tree.map(jnp.add, carry, (loss_i, grads_i)), None

      zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
      (loss, grads), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
      loss, grads = jax.tree.map(lambda x: x / accum, (loss, grads))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      d = ema_decay_at(cfg.ema_decay, state.step)
      ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "lr": schedule(state.step),
               "param_norm": optax.global_norm(params)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         ema_params=ema, rng=rng), metrics

  def evaluate(params, batch, rng):
    loss_rng, sample_rng = jax.random.split(rng)
    loss, _ = _loss(model, params, batch, loss_rng)
    sampled = model.apply(params, batch["obs"], sample_rng, method=model.sample_actions)
    weights = jnp.broadcast_to(batch.get("mask", True), sampled.shape).astype(jnp.float32)
    err = sampled - batch["actions"]
    total = jnp.maximum(weights.sum(), 1.0)
    return {"eval_loss": loss, "sampled_action_mse": jnp.sum(err ** 2 * weights) / total,
            "sampled_action_mae": jnp.sum(jnp.abs(err) * weights) / total}

  def sample(params, obs, rng):
    return model.apply(params, obs, rng, method=model.sample_actions)

  return Trainer(
      tx, jax.jit(init, out_shardings=replicated),
      jax.jit(step, in_shardings=(replicated, batch_sharding),
              out_shardings=(replicated, replicated), donate_argnums=0),
      jax.jit(evaluate, in_shardings=(replicated, batch_sharding, replicated)),
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
