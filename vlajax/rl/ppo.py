"""PPO, jitted end to end and data-parallel over a device mesh.

One training iteration (`Learner.iteration`, a single jitted function) is, by granularity:

  rollout      lax.scan over `unroll_length` control steps of `num_envs` batched envs
  gae          advantages and returns (time-major, reverse scan)
  epoch        lax.scan over `num_epochs`, each a fresh permutation of the T·B samples
  minibatch    lax.scan over `num_minibatches` gradient steps

The env batch axis is sharded over the mesh axis `data`; parameters, optimizer state and the
observation normalizer are replicated. Because the program is written over the global batch, XLA
inserts the cross-device (and cross-host) reductions for losses, gradients and normalizer
statistics, and the math is the same on 1 device or many.

The policy is a tanh-squashed Gaussian on `obs[policy_obs_key]`; the value function reads
`obs[value_obs_key]` (asymmetric actor-critic on `privileged_state`).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from jax.sharding import Mesh

from vlajax.core import mesh as mesh_lib
from vlajax.envs import adr as adr_lib
from vlajax.envs import backend as env_backend
from vlajax.envs import wrappers
from vlajax.rl import distributions as dist
from vlajax.rl import evaluation
from vlajax.rl import gae as gae_lib
from vlajax.rl import loop
from vlajax.rl import running_stats
from vlajax.rl.networks import MLP

LR_SCHEDULES = ("constant", "linear", "cosine", "adaptive_kl")
ADVANTAGES = ("gae", "lambda_next")
BEHAVIOUR_LOG_PROBS = ("rollout", "updated_stats")


def default_config() -> ml_collections.ConfigDict:
  """Learner hyperparameters (Playground Go1 joystick values where they apply)."""
  return ml_collections.ConfigDict({
      "num_envs": 8192,
      "unroll_length": 20,
      "num_minibatches": 32,
      "num_epochs": 4,
      "num_iterations": 1200,
      "episode_length": 1000,
      "action_repeat": 1,
      "gamma": 0.97,
      "gae_lambda": 0.95,
      "learning_rate": 3e-4,
      "lr_schedule": "constant",
      "kl_target": 0.01,           # adaptive_kl only
      "lr_bounds": (1e-5, 1e-2),   # adaptive_kl only
      "clip_eps": 0.3,
      "clip_value_loss": True,
      "value_coef": 0.5,
      "entropy_coef": 1e-2,
      "max_grad_norm": 1.0,
      "normalize_advantages": True,
      "advantage": "gae",          # or "lambda_next" (brax: r + γ G^λ_{t+1} - V; gae.py)
      "recompute_advantages": True,   # GAE per minibatch of whole trajectories, current value net
      # The ratio's denominator: "rollout" (brax), the behaviour policy's log-prob under the
      # normalizer it acted with; "updated_stats", the same params under the normalizer updated
      # with the rollout (the ratio starts at 1; normalizer drift is not clipped).
      "behaviour_log_prob": "rollout",
      "normalize_observations": True,
      "obs_clip": 10.0,            # normalized observations clipped to +-obs_clip; 0: no clip (brax)
      "bootstrap_on_timeout": True,
      "reset_refresh": -1,         # auto-reset pool redrawn every N env steps; < 0: unroll_length
      "reward_scaling": 1.0,
      "policy_hidden": (512, 256, 128),
      "value_hidden": (512, 256, 128),
      "activation": "swish",
      "network_init": "lecun_uniform",  # brax's; or "orthogonal" (purejaxrl); networks.INITS
      "policy_obs_key": "state",
      "value_obs_key": "privileged_state",
      "min_std": 1e-3,
      "init_noise_std": 0.6941,    # softplus(0) + min_std: brax's std head, no offset
  })


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the offending key for inconsistent learner settings."""
  if config.lr_schedule not in LR_SCHEDULES:
    raise ValueError(f"ppo.lr_schedule '{config.lr_schedule}' unknown (use one of {LR_SCHEDULES})")
  if config.advantage not in ADVANTAGES:
    raise ValueError(f"ppo.advantage '{config.advantage}' unknown (use one of {ADVANTAGES})")
  if config.behaviour_log_prob not in BEHAVIOUR_LOG_PROBS:
    raise ValueError(f"ppo.behaviour_log_prob '{config.behaviour_log_prob}' unknown (use one of "
                     f"{BEHAVIOUR_LOG_PROBS})")
  loop.validate_batching("ppo", config, num_devices)
  samples = config.num_envs * config.unroll_length
  if samples % config.num_minibatches:
    raise ValueError(f"ppo.num_minibatches ({config.num_minibatches}) must divide "
                     f"num_envs × unroll_length ({samples})")
  if config.recompute_advantages and config.num_envs % config.num_minibatches:
    raise ValueError(f"ppo.num_minibatches ({config.num_minibatches}) must divide ppo.num_envs "
                     f"({config.num_envs}) with recompute_advantages (minibatches of whole "
                     "trajectories)")


@struct.dataclass
class TrainState:
  """Everything a run needs to continue bit for bit."""
  params: dict            # {"policy": ..., "value": ...}
  opt_state: Any
  obs_stats: running_stats.RunningStats
  env_state: Any          # batched env State, leading axis num_envs (sharded)
  episode_return: jax.Array   # f32[num_envs], running return of the current episode
  episode_length: jax.Array   # f32[num_envs]
  rng: jax.Array
  iteration: jax.Array    # i32[]
  learning_rate: jax.Array  # f32[], the current (possibly adapted) learning rate
  adr: Any = None         # adr.ADRState when automatic domain randomization is on


@struct.dataclass
class Transition:
  """Rollout data, time-major f32[T, B, ...]."""
  obs: dict
  raw_action: jax.Array
  log_prob: jax.Array    # of `raw_action` under the behaviour policy (its normalizer stats)
  reward: jax.Array
  done: jax.Array
  truncation: jax.Array
  final_obs: dict
  env_metrics: dict      # every env metric: reward/<term> and task metrics such as tracking errors


class Networks:
  """Policy and value MLPs plus the pure functions PPO needs from them."""

  def __init__(self, config: ml_collections.ConfigDict, action_size: int):
    self.config = config
    self.action_size = action_size
    self.policy = MLP(tuple(config.policy_hidden), 2 * action_size, config.activation,
                      out_scale=0.01, init_scheme=config.network_init)
    self.value = MLP(tuple(config.value_hidden), 1, config.activation,
                     init_scheme=config.network_init)
    # softplus(raw) + min_std = init_noise_std at raw = this offset.
    self._std_offset = float(jnp.log(jnp.expm1(config.init_noise_std - config.min_std)))

  def init(self, rng: jax.Array, obs_sizes: dict) -> dict:
    k_pi, k_v = jax.random.split(rng)
    pi_in = jnp.zeros(obs_sizes[self.config.policy_obs_key])
    v_in = jnp.zeros(obs_sizes[self.config.value_obs_key])
    return {"policy": self.policy.init(k_pi, pi_in), "value": self.value.init(k_v, v_in)}

  def distribution(self, params: dict, obs: dict):
    logits = self.policy.apply(params["policy"], obs[self.config.policy_obs_key])
    mean, raw_std = jnp.split(logits, 2, axis=-1)
    std = jax.nn.softplus(raw_std + self._std_offset) + self.config.min_std
    return mean, std

  def value_fn(self, params: dict, obs: dict) -> jax.Array:
    return self.value.apply(params["value"], obs[self.config.value_obs_key])[..., 0]


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with grad-norm clipping; the learning rate is injected so schedules and KL can set it."""
  return optax.chain(
      optax.clip_by_global_norm(config.max_grad_norm),
      optax.inject_hyperparams(optax.adam)(learning_rate=config.learning_rate),
  )


def scheduled_lr(config: ml_collections.ConfigDict, iteration: jax.Array,
                 current: jax.Array) -> jax.Array:
  """Learning rate for `iteration` (adaptive_kl keeps `current`; it is adapted after the update)."""
  frac = jnp.clip(iteration / max(config.num_iterations, 1), 0.0, 1.0)
  if config.lr_schedule == "linear":
    return config.learning_rate * (1.0 - frac)
  if config.lr_schedule == "cosine":
    return config.learning_rate * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
  if config.lr_schedule == "adaptive_kl":
    return current
  return jnp.asarray(config.learning_rate, jnp.float32)


def adapt_lr_to_kl(config, lr: jax.Array, kl: jax.Array) -> jax.Array:
  """rsl_rl's rule: ÷1.5 when KL > 2·target, ×1.5 when KL < target/2, within bounds."""
  lr = jnp.where(kl > 2.0 * config.kl_target, lr / 1.5, lr)
  lr = jnp.where(kl < 0.5 * config.kl_target, lr * 1.5, lr)
  low, high = config.lr_bounds
  return jnp.clip(lr, low, high)


class Learner:
  """Builds the jitted `init` and `iteration` for one env and config on one mesh."""

  def __init__(self, env, config: ml_collections.ConfigDict, mesh: Mesh | None = None,
               adr_config: ml_collections.ConfigDict | None = None):
    """`adr_config`: an `adr.default_config()` section plus `performance_metric` (a reward-term
    metric such as `reward/tracking_lin_vel`, averaged over each rollout); ADR runs when enabled."""
    self.mesh = mesh or mesh_lib.make_mesh({"data": -1})
    self._adr_initial = adr_lib.initial_state(adr_config, env)
    self.adr_metric = adr_config.performance_metric if self._adr_initial is not None else None
    self.num_devices = self.mesh.devices.size
    validate(config, self.num_devices)
    self.config = config
    self.env = env
    # With the default (`reset_refresh < 0`) the pool is redrawn once before each rollout's scan.
    self.train_env = wrappers.wrap_for_training(
        env, config.episode_length, config.action_repeat,
        reset_refresh=config.unroll_length if config.reset_refresh < 0 else config.reset_refresh,
        refresh_by_caller=config.reset_refresh < 0)
    self.eval_env = evaluation.make_eval_env(env, config.episode_length, config.action_repeat)
    self.obs_sizes = env.observation_size
    for key in (config.policy_obs_key, config.value_obs_key):
      if key not in self.obs_sizes:
        raise KeyError(f"observation key '{key}' not produced by the env "
                       f"(it has: {', '.join(sorted(self.obs_sizes))})")
    self.networks = Networks(config, env.action_size)
    self.optimizer = make_optimizer(config)
    self.env_steps_per_iteration = config.num_envs * config.unroll_length * config.action_repeat

    batch = mesh_lib.sharding(self.mesh, "data")
    replicated = mesh_lib.replicated(self.mesh)
    abstract = jax.eval_shape(self._init, jax.random.PRNGKey(0))
    self.state_sharding = TrainState(
        params=jax.tree.map(lambda _: replicated, abstract.params),
        opt_state=jax.tree.map(lambda _: replicated, abstract.opt_state),
        obs_stats=jax.tree.map(lambda _: replicated, abstract.obs_stats),
        # Warp's contact buffers are shared by all worlds: replicated, not split over devices.
        env_state=env_backend.state_shardings(abstract.env_state, config.num_envs, batch,
                                              replicated),
        episode_return=batch, episode_length=batch, rng=replicated, iteration=replicated,
        learning_rate=replicated, adr=jax.tree.map(lambda _: replicated, abstract.adr))
    self.init = jax.jit(self._init, out_shardings=self.state_sharding)
    self.iteration = jax.jit(self._iteration, in_shardings=(self.state_sharding,),
                             out_shardings=(self.state_sharding, replicated), donate_argnums=0)
    self.evaluate = jax.jit(self._evaluate, static_argnums=2, out_shardings=replicated)

  # -- init ---------------------------------------------------------------------------------------

  def _init(self, rng: jax.Array) -> TrainState:
    k_net, k_env, k_run = jax.random.split(rng, 3)
    params = self.networks.init(k_net, self.obs_sizes)
    env_state = self.train_env.reset(jax.random.split(k_env, self.config.num_envs))
    zeros = jnp.zeros((self.config.num_envs,))
    adr_state = self._adr_initial
    if adr_state is not None:
      env_state = adr_lib.with_ranges(env_state, adr_state)
    return TrainState(params=params, opt_state=self.optimizer.init(params),
                      obs_stats=running_stats.init(self.obs_sizes), env_state=env_state,
                      episode_return=zeros, episode_length=zeros, rng=k_run,
                      iteration=jnp.zeros((), jnp.int32),
                      learning_rate=jnp.asarray(self.config.learning_rate, jnp.float32),
                      adr=adr_state)

  # -- acting -------------------------------------------------------------------------------------

  def _normalize(self, stats, obs):
    if not self.config.normalize_observations:
      return obs
    return running_stats.normalize(stats, obs, clip=self.config.get("obs_clip", 10.0))

  def policy_fn(self, params: dict, stats, obs: dict, rng: jax.Array | None = None):
    """Action f32[..., A] in [-1, 1]: a sample, or the mode when `rng` is None."""
    mean, std = self.networks.distribution(params, self._normalize(stats, obs))
    if rng is None:
      return dist.mode(mean)
    return dist.squash(dist.sample_raw(rng, mean, std))

  def _rollout(self, state: TrainState, rng: jax.Array):
    cfg = self.config

    def step(carry, key):
      env_state, ep_return, ep_length, totals = carry
      mean, std = self.networks.distribution(
          state.params, self._normalize(state.obs_stats, env_state.obs))
      raw = dist.sample_raw(key, mean, std)
      next_state = self.train_env.step(env_state, dist.squash(raw))
      transition = Transition(
          obs=env_state.obs, raw_action=raw, log_prob=dist.log_prob(mean, std, raw),
          reward=next_state.reward, done=next_state.done,
          truncation=next_state.info["truncation"], final_obs=next_state.info["final_obs"],
          env_metrics=dict(next_state.metrics))
      ep_return, ep_length, totals = loop.track_episodes(ep_return, ep_length, totals,
                                                         next_state.reward, next_state.done)
      return (next_state, ep_return, ep_length, totals), transition

    env_state = self.train_env.refresh_pool_if_due(state.env_state)
    carry = (env_state, state.episode_return, state.episode_length, loop.episode_totals())
    carry, traj = jax.lax.scan(step, carry, jax.random.split(rng, cfg.unroll_length))
    return carry, traj

  # -- learning -----------------------------------------------------------------------------------

  def _loss(self, params, stats, batch, rng, value=None):
    """Clipped-surrogate PPO loss on a flat minibatch (`batch` leaves [N, ...]); `value`: V of
    `batch["obs"]` under `params` (f32[N], differentiable) when the caller already has it."""
    cfg = self.config
    obs = self._normalize(stats, batch["obs"])
    mean, std = self.networks.distribution(params, obs)
    log_prob = dist.log_prob(mean, std, batch["raw_action"])
    log_ratio = log_prob - batch["log_prob"]
    ratio = jnp.exp(log_ratio)
    weight = batch["mask"]
    denom = jnp.maximum(jnp.sum(weight), 1.0)
    adv = batch["advantage"]
    if cfg.normalize_advantages:
      adv_mean = jnp.sum(adv * weight) / denom
      adv_std = jnp.sqrt(jnp.sum(((adv - adv_mean) ** 2) * weight) / denom)
      adv = (adv - adv_mean) / (adv_std + 1e-8)
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv)
    policy_loss = -jnp.sum(surrogate * weight) / denom

    if value is None:
      value = self.networks.value_fn(params, obs)
    value_error = (value - batch["return"]) ** 2
    if cfg.clip_value_loss:
      clipped = batch["value"] + jnp.clip(value - batch["value"], -cfg.clip_eps, cfg.clip_eps)
      value_error = jnp.maximum(value_error, (clipped - batch["return"]) ** 2)
    value_loss = 0.5 * jnp.sum(value_error * weight) / denom

    entropy = jnp.mean(dist.entropy(mean, std, rng))
    loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
    metrics = {
        "loss/total": loss, "loss/policy": policy_loss, "loss/value": value_loss,
        "loss/entropy": entropy,
        "ppo/approx_kl": jnp.sum(((ratio - 1.0) - log_ratio) * weight) / denom,
        "ppo/clip_fraction": jnp.sum((jnp.abs(ratio - 1.0) > cfg.clip_eps) * weight) / denom,
        "policy/std": jnp.mean(std),
    }
    return loss, metrics

  def _advantages(self, params, stats, seq: dict, values=None):
    """GAE (or `advantage="lambda_next"`) over time-major `seq` (`obs`: [T, B, ...]; with
    `bootstrap_on_timeout` `final_obs`:
    [T, B, ...], else `last_obs`: [1, B, ...], the observation after the last step; `reward`,
    `done`, `truncation`: [T, B]) with value net
    `params["value"]`: (values, advantages, returns, mask), each f32[T, B]. `values`: V of
    `seq["obs"]` when the caller already has it."""
    cfg = self.config
    if values is None:
      values = self.networks.value_fn(params, self._normalize(stats, seq["obs"]))
    if cfg.bootstrap_on_timeout:   # V of the true next observation (before any auto-reset)
      next_values = self.networks.value_fn(params, self._normalize(stats, seq["final_obs"]))
    else:
      # GAE then ignores the next value wherever an episode ended, and elsewhere s_{t+1} is the
      # next row's observation: one value pass over the batch instead of two (as brax does).
      last = self.networks.value_fn(params, self._normalize(stats, seq["last_obs"]))
      next_values = jnp.concatenate([values[1:], last], axis=0)
    rewards = seq["reward"] * cfg.reward_scaling
    advantages, returns, mask = gae_lib.gae(rewards, values, next_values, seq["done"],
                                            seq["truncation"], cfg.gamma, cfg.gae_lambda,
                                            cfg.bootstrap_on_timeout)
    if cfg.advantage == "lambda_next":
      advantages = gae_lib.lambda_next_advantage(rewards, values, next_values, returns, seq["done"],
                                                 seq["truncation"], mask, cfg.gamma,
                                                 cfg.bootstrap_on_timeout)
    return values, advantages, returns, mask

  def _trajectory_loss(self, params, stats, seq: dict, rng):
    """`_loss` on a minibatch of whole trajectories (`seq` leaves [T, b, ...], plus the rollout's
    `raw_action`, `log_prob` and `value`), advantages recomputed with the current value net.
    One value pass serves both (as in brax): GAE reads it without its gradient, the loss with."""
    values = self.networks.value_fn(params, self._normalize(stats, seq["obs"]))
    _, advantages, returns, mask = jax.lax.stop_gradient(
        self._advantages(params, stats, seq, values=values))
    batch = {"obs": seq["obs"], "raw_action": seq["raw_action"], "log_prob": seq["log_prob"],
             "advantage": advantages, "return": returns, "value": seq["value"], "mask": mask}
    flat = lambda x: jnp.reshape(x, (-1,) + x.shape[2:])
    return self._loss(params, stats, jax.tree.map(flat, batch), rng, value=flat(values))

  def _iteration(self, state: TrainState) -> tuple[TrainState, dict]:
    cfg = self.config
    rng, k_roll, k_sgd = jax.random.split(state.rng, 3)
    (env_state, ep_return, ep_length, totals), traj = self._rollout(state, k_roll)

    obs_stats = state.obs_stats
    if cfg.normalize_observations:
      obs_stats = running_stats.update(obs_stats, traj.obs)
    seq = {"obs": traj.obs, "reward": traj.reward, "done": traj.done, "truncation": traj.truncation}
    if cfg.bootstrap_on_timeout:
      seq["final_obs"] = traj.final_obs
    else:
      seq["last_obs"] = jax.tree.map(lambda x: x[None], env_state.obs)
    values, advantages, returns, mask = self._advantages(state.params, obs_stats, seq)
    log_prob = traj.log_prob
    if cfg.behaviour_log_prob == "updated_stats":
      mean, std = self.networks.distribution(state.params, self._normalize(obs_stats, traj.obs))
      log_prob = dist.log_prob(mean, std, traj.raw_action)

    if cfg.recompute_advantages:
      # brax's way: minibatches of whole trajectories (a split of the env axis), GAE recomputed in
      # every minibatch loss with the value net as it is then.
      data = {**seq, "raw_action": traj.raw_action, "log_prob": log_prob, "value": values}
      num_units, unit_axis = cfg.num_envs, 1
      loss_fn = self._trajectory_loss
    else:
      num_samples = cfg.num_envs * cfg.unroll_length
      flat = lambda x: jnp.reshape(x, (num_samples,) + x.shape[2:])
      data = jax.tree.map(flat, {"obs": traj.obs, "raw_action": traj.raw_action,
                                 "log_prob": log_prob, "advantage": advantages,
                                 "return": returns, "value": values, "mask": mask})
      num_units, unit_axis = num_samples, 0
      loss_fn = self._loss

    def minibatches(x, perm):
      """`x` permuted along the unit axis and split into [num_minibatches, ...] there."""
      x = jnp.take(x, perm, axis=unit_axis)
      shape = x.shape[:unit_axis] + (cfg.num_minibatches, -1) + x.shape[unit_axis + 1:]
      return jnp.moveaxis(jnp.reshape(x, shape), unit_axis, 0)

    lr = scheduled_lr(cfg, state.iteration, state.learning_rate)
    opt_state = _set_learning_rate(state.opt_state, lr)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch_step(carry, batch):
      params, opt_state, key = carry
      key, k_ent = jax.random.split(key)
      (_, metrics), grads = grad_fn(params, obs_stats, batch, k_ent)
      updates, opt_state = self.optimizer.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      metrics["grad_norm"] = optax.global_norm(grads)
      return (params, opt_state, key), metrics

    def epoch_step(carry, key):
      params, opt_state = carry
      k_perm, k_mb = jax.random.split(key)
      perm = jax.random.permutation(k_perm, num_units)
      shuffled = jax.tree.map(lambda x: minibatches(x, perm), data)
      (params, opt_state, _), metrics = jax.lax.scan(
          minibatch_step, (params, opt_state, k_mb), shuffled)
      return (params, opt_state), metrics

    (params, opt_state), metrics = jax.lax.scan(
        epoch_step, (state.params, opt_state), jax.random.split(k_sgd, cfg.num_epochs))
    metrics = jax.tree.map(jnp.mean, metrics)

    next_lr = lr
    if cfg.lr_schedule == "adaptive_kl":
      next_lr = adapt_lr_to_kl(cfg, lr, metrics["ppo/approx_kl"])

    explained = 1.0 - jnp.var(returns - values) / (jnp.var(returns) + 1e-8)
    metrics.update({"ppo/learning_rate": lr, "ppo/explained_variance": explained,
                    "rollout/reward": jnp.mean(traj.reward)})
    metrics.update(loop.episode_metrics(totals))
    metrics.update({k: jnp.mean(v) for k, v in traj.env_metrics.items()})

    adr_state = state.adr
    if adr_state is not None:
      adr_state, env_state = adr_lib.advance(adr_state, env_state, traj.env_metrics, self.adr_metric)
    metrics.update(adr_lib.range_metrics(env_state))  # the ranges the next resets draw from
    new_state = TrainState(params=params, opt_state=opt_state, obs_stats=obs_stats,
                           env_state=env_state, episode_return=ep_return, episode_length=ep_length,
                           rng=rng, iteration=state.iteration + 1, learning_rate=next_lr,
                           adr=adr_state)
    return new_state, metrics

  # -- evaluation ---------------------------------------------------------------------------------

  def _evaluate(self, state: TrainState, rng: jax.Array, num_envs: int) -> dict:
    """Deterministic policy over one episode of `num_envs` fresh envs (`evaluation.evaluate`)."""
    def act(carry, obs, _):
      return self.policy_fn(state.params, state.obs_stats, obs), carry
    return evaluation.evaluate(self.eval_env, act, jnp.zeros(()), rng, num_envs,
                               self.config.episode_length)


def _set_learning_rate(opt_state, lr):
  """Writes `lr` into the injected-hyperparameter state of the optimizer chain."""
  clip_state, adam_state = opt_state
  hyper = dict(adam_state.hyperparams)
  hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
  return (clip_state, adam_state._replace(hyperparams=hyper))


# -- deployment -----------------------------------------------------------------------------------

def load_policy(path, step: int | None = None):
  """The deterministic policy (tanh of the mean) of a PPO run directory (or its `checkpoints/`).

  Returns `(policy, info)`: `policy(obs) -> f32[..., A]` in [-1, 1] is jitted, takes the env's
  observation dict (unbatched or batched) and checks the policy observation's key and shape;
  `info` is `loop.policy_info`'s: `config` (the run's config, a dict), `step`, `obs_key`,
  `observation_size`, `action_size`, `action_horizon`, `action_repeat`, `control_hz`. Only the
  policy parameters and the observation normalizer are read.
  """
  checkpointer, step, run_config, env, config = loop.open_run(path, "ppo", step)
  networks = Networks(config, env.action_size)
  obs_sizes = env.observation_size
  obs_key = config.policy_obs_key
  target = {"params": {"policy": jax.eval_shape(
                networks.policy.init, jax.random.PRNGKey(0), jnp.zeros(obs_sizes[obs_key]))},
            "obs_stats": jax.eval_shape(lambda: running_stats.init(obs_sizes))}
  restored = checkpointer.restore(target, step=step, partial=True)
  checkpointer.close()
  return loop.deterministic_policy(networks.distribution,
                                  {"policy": restored["params"]["policy"]}, restored["obs_stats"],
                                  config.normalize_observations, obs_key, env, run_config, step,
                                  obs_clip=config.get("obs_clip", 10.0),
                                  action_repeat=config.get("action_repeat", 1))
