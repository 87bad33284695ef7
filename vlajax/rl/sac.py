"""Soft Actor-Critic, jitted end to end with an on-device replay, data-parallel over a device mesh.

One training iteration (`Learner.iteration`, a single jitted function) is a `lax.scan` over
`steps_per_iteration` batched env steps, each:

  act       tanh-Gaussian sample from the actor (uniform random actions until `min_replay`
            transitions are stored)
  step      `num_envs` auto-resetting envs
  insert    (obs, action, reward, next_obs, terminal) into the replay; `next_obs` is the true last
            observation (`info["final_obs"]`) when an episode ended, and `terminal` is 0 for time-limit
            truncations, so the target bootstraps through them
  learn     `grad_updates_per_step` gradient steps (the update-to-data ratio in brax's sense), each on
            a fresh uniform batch: temperature, twin-Q critic, actor, then Polyak target update

The env batch and the replay columns are sharded over the mesh axis `data`; parameters, optimizer
states and the observation normalizer are replicated. The program is written over the global batch,
so the math is the same on 1 device or many.

Losses (Haarnoja et al. 2018, with the brax / Playground defaults):
  critic  ½ Σ_i (Q_i(s, a) − y)², y = r·scale + γ (1 − terminal) (min_j Q̄_j(s', a') − α log π(a'|s'))
  actor   α log π(ã|s) − min_j Q_j(s, ã),  ã ~ π(·|s) (reparameterized)
  alpha   α · sg(−log π(ã|s) − H̄),  H̄ = target_entropy_scale × action_size
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
from vlajax.envs import wrappers
from vlajax.rl import distributions as dist
from vlajax.rl import evaluation, loop, replay as replay_lib, running_stats
from vlajax.rl.ensemble import ensemble
from vlajax.rl.networks import MLP


def default_config() -> ml_collections.ConfigDict:
  """Learner hyperparameters (MuJoCo Playground's DMC SAC values where they apply)."""
  return ml_collections.ConfigDict({
      "num_envs": 128,
      "steps_per_iteration": 64,      # batched env steps per jitted iteration
      "num_iterations": 600,
      "episode_length": 1000,
      "action_repeat": 1,
      "reset_refresh": -1,            # auto-reset pool redrawn every N env steps; < 0: every iteration
      "batch_size": 512,              # must be a multiple of num_envs
      "grad_updates_per_step": 8,     # gradient steps per batched env step (UTD ratio)
      "replay_capacity": 4_194_304,   # transitions over all envs
      "min_replay": 8192,             # transitions collected with random actions before learning
      "learning_rate": 1e-3,
      "actor_learning_rate": -1.0,    # < 0: same as learning_rate
      "alpha_learning_rate": -1.0,    # < 0: same as learning_rate
      "gamma": 0.99,
      "tau": 0.005,
      "init_alpha": 1.0,
      "target_entropy_scale": -0.5,   # H̄ = scale × action_size (brax −0.5, Haarnoja et al. −1)
      "reward_scaling": 1.0,
      "max_grad_norm": 0.0,           # 0 = no clipping
      "normalize_observations": True,
      "actor_hidden": (256, 256),
      "critic_hidden": (256, 256),
      "num_critics": 2,
      "critic_layer_norm": True,
      "activation": "relu",
      "min_std": 1e-3,
      "policy_obs_key": "state",
      "critic_obs_key": "state",
  })


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the offending key for inconsistent learner settings."""
  loop.validate_batching("sac", config, num_devices)
  if config.min_replay > config.replay_capacity:
    raise ValueError(f"sac.min_replay ({config.min_replay}) exceeds sac.replay_capacity "
                     f"({config.replay_capacity})")
  if config.grad_updates_per_step < 0:
    raise ValueError(f"sac.grad_updates_per_step ({config.grad_updates_per_step}) must be ≥ 0")
  if config.num_critics < 2:
    raise ValueError(f"sac.num_critics ({config.num_critics}) must be ≥ 2 (min over critics)")


class Networks:
  """Actor and twin-critic MLPs and the pure functions SAC needs from them."""

  def __init__(self, config: ml_collections.ConfigDict, action_size: int):
    self.config = config
    self.action_size = action_size
    self.actor = MLP(tuple(config.actor_hidden), 2 * action_size, config.activation)
    self.critic = ensemble(MLP, config.num_critics)(
        tuple(config.critic_hidden), 1, config.activation, layer_norm=config.critic_layer_norm)

  def init(self, rng: jax.Array, obs_sizes: dict) -> dict:
    k_actor, k_critic = jax.random.split(rng)
    pi_in = jnp.zeros(obs_sizes[self.config.policy_obs_key])
    q_in = jnp.zeros(obs_sizes[self.config.critic_obs_key][0] + self.action_size)
    critic = self.critic.init(k_critic, q_in)
    return {"actor": self.actor.init(k_actor, pi_in), "critic": critic,
            "target_critic": jax.tree.map(jnp.copy, critic),
            "log_alpha": jnp.log(jnp.asarray(self.config.init_alpha, jnp.float32))}

  def distribution(self, actor_params, obs: dict):
    logits = self.actor.apply(actor_params, obs[self.config.policy_obs_key])
    return dist.params_from_logits(logits, self.config.min_std)

  def q_values(self, critic_params, obs: dict, action: jax.Array) -> jax.Array:
    """f32[num_critics, ...]."""
    x = jnp.concatenate([obs[self.config.critic_obs_key], action], axis=-1)
    return self.critic.apply(critic_params, x)[..., 0]

  def sample(self, actor_params, obs: dict, rng: jax.Array):
    """(action in [-1, 1], log π(action)) with the reparameterization trick."""
    mean, std = self.distribution(actor_params, obs)
    raw = dist.sample_raw(rng, mean, std)
    return dist.squash(raw), dist.log_prob(mean, std, raw)


@struct.dataclass
class TrainState:
  """Everything a run needs to continue bit for bit (the replay included)."""
  params: dict            # {"actor", "critic", "target_critic", "log_alpha"}
  opt_state: dict         # {"actor", "critic", "alpha"}
  obs_stats: running_stats.RunningStats
  replay: replay_lib.Replay
  env_state: Any          # batched env State, leading axis num_envs (sharded)
  episode_return: jax.Array   # f32[num_envs]
  episode_length: jax.Array   # f32[num_envs]
  rng: jax.Array
  iteration: jax.Array    # i32[]


def _adam(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
  if max_grad_norm > 0:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr))
  return optax.adam(lr)


class Learner:
  """Builds the jitted `init`, `iteration` and `evaluate` for one env and config on one mesh."""

  def __init__(self, env, config: ml_collections.ConfigDict, mesh: Mesh | None = None):
    self.mesh = mesh or mesh_lib.make_mesh({"data": -1})
    validate(config, self.mesh.devices.size)
    self.config = config
    self.env = env
    # Finished envs take a fresh initial state from a pool redrawn every `reset_refresh` steps
    # rather than a batched reset at every step where one finished (with 128 envs that is most
    # steps, and it made our env step cost 2 physics steps on a GPU). By default the pool is
    # redrawn once before each iteration's scan, so the scanned step holds no cond.
    self.train_env = wrappers.wrap_for_training(
        env, config.episode_length, config.action_repeat,
        reset_refresh=config.steps_per_iteration if config.reset_refresh < 0 else config.reset_refresh,
        refresh_by_caller=config.reset_refresh < 0)
    self.eval_env = evaluation.make_eval_env(env, config.episode_length, config.action_repeat)
    self.obs_sizes = env.observation_size
    for key in (config.policy_obs_key, config.critic_obs_key):
      if key not in self.obs_sizes:
        raise KeyError(f"observation key '{key}' not produced by the env "
                       f"(it has: {', '.join(sorted(self.obs_sizes))})")
    self.obs_keys = sorted({config.policy_obs_key, config.critic_obs_key})
    self.action_size = env.action_size
    self.networks = Networks(config, self.action_size)
    lr = config.learning_rate
    self.optimizers = {
        "actor": _adam(config.actor_learning_rate if config.actor_learning_rate > 0 else lr,
                       config.max_grad_norm),
        "critic": _adam(lr, config.max_grad_norm),
        "alpha": optax.adam(config.alpha_learning_rate if config.alpha_learning_rate > 0 else lr),
    }
    self.target_entropy = config.target_entropy_scale * self.action_size
    self.per_env_batch = config.batch_size // config.num_envs
    self.env_steps_per_iteration = (config.num_envs * config.steps_per_iteration
                                    * config.action_repeat)

    batch = mesh_lib.sharding(self.mesh, "data")
    replicated = mesh_lib.replicated(self.mesh)
    key = jax.random.PRNGKey(0)
    abstract = jax.eval_shape(self._init, key, jax.eval_shape(self._init_params, key))
    self.state_sharding = TrainState(
        params=jax.tree.map(lambda _: replicated, abstract.params),
        opt_state=jax.tree.map(lambda _: replicated, abstract.opt_state),
        obs_stats=jax.tree.map(lambda _: replicated, abstract.obs_stats),
        replay=replay_lib.sharding(abstract.replay, self.mesh),
        env_state=jax.tree.map(lambda _: batch, abstract.env_state),
        episode_return=batch, episode_length=batch, rng=replicated, iteration=replicated)
    self._init_params_jit = jax.jit(self._init_params)
    self._init_rest = jax.jit(self._init, in_shardings=(replicated, self.state_sharding.params),
                              out_shardings=self.state_sharding)
    self.iteration = jax.jit(self._iteration, in_shardings=(self.state_sharding,),
                             out_shardings=(self.state_sharding, replicated), donate_argnums=0)
    self.evaluate = jax.jit(self._evaluate, static_argnums=2, out_shardings=replicated)

  # -- init ---------------------------------------------------------------------------------------

  def _transition_example(self) -> dict:
    obs = {k: jnp.zeros(self.obs_sizes[k]) for k in self.obs_keys}
    return {"obs": obs, "next_obs": obs, "action": jnp.zeros((self.action_size,)),
            "reward": jnp.zeros(()), "terminal": jnp.zeros(())}

  def init(self, rng: jax.Array) -> TrainState:
    """The initial train state, laid out on the mesh.

    The parameters are drawn by a separate single-device program: a batched orthogonal init (the
    critic ensemble) runs LAPACK QR on the CPU thread pool, which deadlocks when it runs inside a
    program spanning several host-platform CPU devices.
    """
    k_net, k_rest = jax.random.split(rng)
    params = jax.device_put(self._init_params_jit(k_net), self.state_sharding.params)
    return self._init_rest(k_rest, params)

  def _init_params(self, rng: jax.Array) -> dict:
    return self.networks.init(rng, self.obs_sizes)

  def _init(self, rng: jax.Array, params: dict) -> TrainState:
    cfg = self.config
    k_env, k_run = jax.random.split(rng)
    opt_state = {"actor": self.optimizers["actor"].init(params["actor"]),
                 "critic": self.optimizers["critic"].init(params["critic"]),
                 "alpha": self.optimizers["alpha"].init(params["log_alpha"])}
    env_state = self.train_env.reset(jax.random.split(k_env, cfg.num_envs))
    zeros = jnp.zeros((cfg.num_envs,))
    return TrainState(
        params=params, opt_state=opt_state,
        obs_stats=running_stats.init({k: self.obs_sizes[k] for k in self.obs_keys}),
        replay=replay_lib.init(self._transition_example(), cfg.replay_capacity, cfg.num_envs),
        env_state=env_state, episode_return=zeros, episode_length=zeros, rng=k_run,
        iteration=jnp.zeros((), jnp.int32))

  # -- acting -------------------------------------------------------------------------------------

  def _normalize(self, stats, obs: dict) -> dict:
    obs = {k: obs[k] for k in self.obs_keys}
    if not self.config.normalize_observations:
      return obs
    return running_stats.normalize(stats, obs)

  def policy_fn(self, params: dict, stats, obs: dict, rng: jax.Array | None = None):
    """Action f32[..., A] in [-1, 1]: a sample, or the mode when `rng` is None."""
    mean, std = self.networks.distribution(params["actor"], self._normalize(stats, obs))
    if rng is None:
      return dist.mode(mean)
    return dist.squash(dist.sample_raw(rng, mean, std))

  # -- learning -----------------------------------------------------------------------------------

  def _losses(self, params: dict, stats, batch: dict, rng: jax.Array):
    """Gradient step on temperature, critic and actor for one batch `[per_env, num_envs, ...]`."""
    cfg, nets = self.config, self.networks
    obs = self._normalize(stats, batch["obs"])
    next_obs = self._normalize(stats, batch["next_obs"])
    k_alpha, k_next, k_actor = jax.random.split(rng, 3)
    alpha = jnp.exp(params["log_alpha"])

    def alpha_loss(log_alpha):
      _, log_pi = nets.sample(params["actor"], obs, k_alpha)
      return jnp.mean(jnp.exp(log_alpha) * jax.lax.stop_gradient(-log_pi - self.target_entropy))

    def critic_loss(critic_params):
      next_action, next_log_pi = nets.sample(params["actor"], next_obs, k_next)
      next_q = jnp.min(nets.q_values(params["target_critic"], next_obs, next_action), axis=0)
      target = (batch["reward"] * cfg.reward_scaling
                + cfg.gamma * (1.0 - batch["terminal"]) * (next_q - alpha * next_log_pi))
      q = nets.q_values(critic_params, obs, batch["action"])
      loss = 0.5 * jnp.mean(jnp.sum((q - jax.lax.stop_gradient(target)[None]) ** 2, axis=0))
      return loss, jnp.mean(q)

    def actor_loss(actor_params, critic_params):
      action, log_pi = nets.sample(actor_params, obs, k_actor)
      q = jnp.min(nets.q_values(critic_params, obs, action), axis=0)
      return jnp.mean(alpha * log_pi - q), jnp.mean(-log_pi)

    return alpha_loss, critic_loss, actor_loss

  def _update(self, params: dict, opt_state: dict, stats, batch: dict, rng: jax.Array):
    alpha_loss, critic_loss, actor_loss = self._losses(params, stats, batch, rng)
    opt = self.optimizers

    a_loss, a_grad = jax.value_and_grad(alpha_loss)(params["log_alpha"])
    updates, alpha_opt = opt["alpha"].update(a_grad, opt_state["alpha"], params["log_alpha"])
    log_alpha = optax.apply_updates(params["log_alpha"], updates)

    (c_loss, q_mean), c_grad = jax.value_and_grad(critic_loss, has_aux=True)(params["critic"])
    updates, critic_opt = opt["critic"].update(c_grad, opt_state["critic"], params["critic"])
    critic = optax.apply_updates(params["critic"], updates)

    (p_loss, entropy), p_grad = jax.value_and_grad(actor_loss, has_aux=True)(params["actor"], critic)
    updates, actor_opt = opt["actor"].update(p_grad, opt_state["actor"], params["actor"])
    actor = optax.apply_updates(params["actor"], updates)

    tau = self.config.tau
    target = jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, params["target_critic"], critic)
    params = {"actor": actor, "critic": critic, "target_critic": target, "log_alpha": log_alpha}
    opt_state = {"actor": actor_opt, "critic": critic_opt, "alpha": alpha_opt}
    metrics = {"loss/total": c_loss + p_loss + a_loss, "loss/critic": c_loss, "loss/actor": p_loss,
               "loss/alpha": a_loss, "sac/alpha": jnp.exp(log_alpha), "sac/q_mean": q_mean,
               "sac/entropy": entropy, "grad_norm/critic": optax.global_norm(c_grad),
               "grad_norm/actor": optax.global_norm(p_grad)}
    return params, opt_state, metrics

  def _learn(self, params, opt_state, stats, replay, rng):
    """`grad_updates_per_step` updates on fresh batches; returns the mean metrics."""
    def body(carry, key):
      params, opt_state = carry
      k_sample, k_update = jax.random.split(key)
      batch = replay_lib.sample(replay, k_sample, self.per_env_batch)
      params, opt_state, metrics = self._update(params, opt_state, stats, batch, k_update)
      return (params, opt_state), metrics

    keys = jax.random.split(rng, self.config.grad_updates_per_step)
    (params, opt_state), metrics = jax.lax.scan(body, (params, opt_state), keys)
    return params, opt_state, jax.tree.map(jnp.mean, metrics)

  def _metric_template(self, state: TrainState) -> dict:
    batch = jax.eval_shape(lambda r: replay_lib.sample(r, jax.random.PRNGKey(0), self.per_env_batch),
                           state.replay)
    out = jax.eval_shape(self._update, state.params, state.opt_state, state.obs_stats, batch,
                         jax.random.PRNGKey(0))[2]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out)

  def _iteration(self, state: TrainState) -> tuple[TrainState, dict]:
    cfg = self.config
    template = self._metric_template(state)
    rng, k_steps = jax.random.split(state.rng)

    def env_step(carry, key):
      (params, opt_state, stats, replay, env_state, ep_return, ep_length, done_stats) = carry
      k_act, k_random, k_learn = jax.random.split(key, 3)
      learning = replay.num_transitions >= max(cfg.min_replay, self.per_env_batch * cfg.num_envs)
      policy_action = self.policy_fn(params, stats, env_state.obs, k_act)
      random_action = jax.random.uniform(k_random, policy_action.shape, minval=-1.0, maxval=1.0)
      action = jnp.where(learning, policy_action, random_action)
      next_state = self.train_env.step(env_state, action)
      obs = {k: env_state.obs[k] for k in self.obs_keys}
      done = next_state.done
      row = {"obs": obs, "next_obs": {k: next_state.info["final_obs"][k] for k in self.obs_keys},
             "action": action, "reward": next_state.reward,
             "terminal": done * (1.0 - next_state.info["truncation"])}
      replay = replay_lib.insert(replay, row, done)
      if cfg.normalize_observations:
        stats = running_stats.update(stats, obs)
      # A cond, not a select that computes and discards the prefill steps' updates: on an H100
      # the select measured 8 % slower (BENCHMARKS.md).
      params, opt_state, metrics = jax.lax.cond(
          learning, lambda: self._learn(params, opt_state, stats, replay, k_learn),
          lambda: (params, opt_state, template))
      ep_return, ep_length, done_stats = loop.track_episodes(ep_return, ep_length, done_stats,
                                                             next_state.reward, done)
      carry = (params, opt_state, stats, replay, next_state, ep_return, ep_length, done_stats)
      return carry, (metrics, learning, next_state.reward)

    env_state = self.train_env.refresh_pool_if_due(state.env_state)
    carry = (state.params, state.opt_state, state.obs_stats, state.replay, env_state,
             state.episode_return, state.episode_length, loop.episode_totals())
    carry, (metrics, learning, rewards) = jax.lax.scan(
        env_step, carry, jax.random.split(k_steps, cfg.steps_per_iteration))
    params, opt_state, stats, replay, env_state, ep_return, ep_length, done_stats = carry
    metrics = loop.masked_mean(metrics, learning)
    metrics.update(loop.episode_metrics(done_stats))
    metrics.update({
        "rollout/reward": jnp.mean(rewards),
        "replay/transitions": replay.num_transitions.astype(jnp.float32),
        "sac/learning_fraction": jnp.mean(learning.astype(jnp.float32)),
    })
    new_state = TrainState(params=params, opt_state=opt_state, obs_stats=stats, replay=replay,
                           env_state=env_state, episode_return=ep_return,
                           episode_length=ep_length, rng=rng, iteration=state.iteration + 1)
    return new_state, metrics

  # -- evaluation ---------------------------------------------------------------------------------

  def _evaluate(self, state: TrainState, rng: jax.Array, num_envs: int) -> dict:
    """Deterministic policy (the mode) over one episode of `num_envs` fresh envs."""
    def act(carry, obs, key):
      del key
      return self.policy_fn(state.params, state.obs_stats, obs), carry
    return evaluation.evaluate(self.eval_env, act, jnp.zeros(()), rng, num_envs,
                               self.config.episode_length)


# -- deployment -----------------------------------------------------------------------------------

def load_policy(path, step: int | None = None):
  """The deterministic policy (tanh of the actor's mean) of a SAC run directory (or `checkpoints/`).

  Returns `(policy, info)`: `policy(obs) -> f32[..., A]` in [-1, 1] is jitted, takes the env's
  observation dict (unbatched or batched) and checks the policy observation's key and shape;
  `info` is `loop.policy_info`'s: `config` (the run's config, a dict), `step`, `obs_key`,
  `observation_size`, `action_size`, `action_horizon`, `action_repeat`, `control_hz`. Only the
  actor and the observation normalizer are read from the checkpoint.
  """
  checkpointer, step, run_config, env, config = loop.open_run(path, "sac", step)
  networks = Networks(config, env.action_size)
  obs_sizes = env.observation_size
  obs_key = config.policy_obs_key
  keys = sorted({config.policy_obs_key, config.critic_obs_key})
  target = {"params": {"actor": jax.eval_shape(
                networks.actor.init, jax.random.PRNGKey(0), jnp.zeros(obs_sizes[obs_key]))},
            "obs_stats": jax.eval_shape(lambda: running_stats.init({k: obs_sizes[k] for k in keys}))}
  restored = checkpointer.restore(target, step=step, partial=True)
  checkpointer.close()
  return loop.deterministic_policy(networks.distribution, restored["params"]["actor"],
                                  restored["obs_stats"], config.normalize_observations, obs_key,
                                  env, run_config, step,
                                  action_repeat=config.get("action_repeat", 1))
