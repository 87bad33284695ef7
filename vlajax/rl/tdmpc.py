"""TD-MPC2-style model-based learner, jitted end to end with on-device trajectory replay.

Model (Hansen et al. 2024), all in a latent space z with SimNorm (softmax over groups of 8):

  encoder    z = h(o)                 MLP, LayerNorm + Mish hidden layers, SimNorm output
  dynamics   z' = d(z, a)             MLP, SimNorm output
  reward     r̂ = R(z, a)              logits over two-hot bins (symlog, 101 bins on [-10, 10])
  Q heads    Q_i(z, a), i < 5         logits over the same bins; dropout on the first layer
  prior      π(z)                     tanh-Gaussian, log-std squashed into [log_std_min, log_std_max]
  termination T(z')                   logit that the step into z' ended the episode (`episodic` only)

Training on windows of `horizon` consecutive steps of one episode (`replay.sample_windows`),
unrolling the dynamics from the first encoded observation, with per-step weights ρ^t:

  consistency  Σ_t ρ^t ‖d(z_t, a_t) − sg(h(o_{t+1}))‖² / H
  reward       Σ_t ρ^t CE(R(z_t, a_t), r_t) / H
  value        Σ_t ρ^t Σ_i CE(Q_i(z_t, a_t), r_t + γ (1 − terminal_t) min_{2 random j} Q̄_j(z'_{t}, π(z'_{t}))) / (H·5)
               with z'_t = sg(h(o_{t+1})) (the true last observation at an episode end)
  termination  Σ_t BCE(T(d(z_t, a_t)), terminal_t) / H                       (`episodic` only)
  total        20·consistency + 0.1·reward + 0.1·value [+ 1·termination]  (encoder lr × 0.3, grad clip 20)
  prior        Σ_{t≤H} ρ^t (α log π(a|z_t) − Q_avg(z_t, a) / S) / (H+1), a ~ π(z_t), over the H + 1
               rollout latents (detached); S ← S + 0.01 (max(p95 − p5 of Q_avg(z_0, ·), 1) − S), S₀ = 1

Learning starts once `min_replay` seed transitions (uniform random actions) are stored, with
`pretrain_updates` updates on them (TD-MPC2: as many as there are seed steps), then
`grad_updates_per_step` per batched env step.

Acting plans with MPPI (`vlajax.rl.mppi`) from the encoded observation, vmapped over the env
batch: candidate plans are scored by Σ_t γ^t R̂ + γ^H Q_avg(z_H, π(z_H)); 24 of the 512 candidates
are rollouts of the prior; the previous plan mean, shifted one step, warm-starts the next step
(reset to zero when an env starts a new episode). With `episodic=True` (TD-MPC2's setting for
tasks that terminate, e.g. a fallen pole or robot) a plan stops accruing reward and value after its
first predicted termination (T > 0): without it, plans that fall score like plans that do not.

The env batch and the replay columns are sharded over mesh axis `data`; parameters and optimizer
states are replicated; the program is written over the global batch (same math on 1 or N devices).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from jax.sharding import Mesh

from vlajax.core import mesh as mesh_lib
from vlajax.envs import wrappers
from vlajax.rl import distributions as dist
from vlajax.rl import evaluation, loop, mppi, replay as replay_lib, running_stats
from vlajax.rl.twohot import Bins


def default_config() -> ml_collections.ConfigDict:
  """TD-MPC2's defaults (`tdmpc2/config.yaml`, 5M-parameter-scale model) where they apply."""
  return ml_collections.ConfigDict({
      "num_envs": 16,
      "steps_per_iteration": 50,      # batched env steps per jitted iteration
      "num_iterations": 1000,
      "episode_length": 1000,
      "action_repeat": 1,
      "horizon": 3,                   # model rollout in training = planning horizon
      "batch_size": 256,              # windows per update; a multiple of num_envs
      "grad_updates_per_step": 16,    # gradient steps per batched env step
      "replay_capacity": 1_000_000,
      "min_replay": -1,               # seed transitions (random actions); < 0: max(1000, 5·L)
      "pretrain_updates": -1,         # updates on the seed data when learning starts; < 0: min_replay
      "learning_rate": 3e-4,
      "encoder_lr_scale": 0.3,
      "max_grad_norm": 20.0,
      "tau": 0.01,
      "rho": 0.5,
      "discount": -1.0,               # < 0: clip((L/5 − 1)/(L/5), 0.95, 0.995), L the episode length
      "consistency_coef": 20.0,
      "reward_coef": 0.1,
      "value_coef": 0.1,
      "entropy_coef": 1e-4,
      "log_std_min": -10.0,
      "log_std_max": 2.0,
      "num_bins": 101,
      "vmin": -10.0,
      "vmax": 10.0,
      "latent_dim": 512,
      "mlp_dim": 512,
      "enc_dim": 256,
      "num_enc_layers": 2,
      "num_q": 5,
      "dropout": 0.01,
      "simnorm_dim": 8,
      "q_scale_tau": 0.01,
      "episodic": False,              # termination head, used in planning (tasks that terminate)
      "termination_coef": 1.0,
      "obs_key": "state",
      "normalize_observations": False,  # TD-MPC2 uses raw state observations
      "plan_during_training": True,     # False: act with the policy prior
      "plan_during_eval": True,
      "mppi": mppi.default_config(),
  })


def discount_for(config: ml_collections.ConfigDict) -> float:
  if config.discount >= 0:
    return float(config.discount)
  frac = config.episode_length / 5.0
  return float(min(max((frac - 1.0) / frac, 0.95), 0.995))


def min_replay_for(config: ml_collections.ConfigDict) -> int:
  if config.min_replay >= 0:
    return int(config.min_replay)
  return int(max(1000, 5 * config.episode_length))


def seed_transitions(config: ml_collections.ConfigDict) -> int:
  """Random-action transitions stored before learning starts (enough for one batch of windows)."""
  return max(min_replay_for(config), config.batch_size * config.horizon)


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the offending key for inconsistent learner settings."""
  loop.validate_batching("tdmpc", config, num_devices)
  if config.replay_capacity < seed_transitions(config) + config.num_envs:
    raise ValueError(f"tdmpc.replay_capacity ({config.replay_capacity}) must exceed the seed data "
                     f"({seed_transitions(config)} transitions) by at least num_envs "
                     f"({config.num_envs})")
  if config.latent_dim % config.simnorm_dim:
    raise ValueError(f"tdmpc.latent_dim ({config.latent_dim}) must be a multiple of "
                     f"tdmpc.simnorm_dim ({config.simnorm_dim})")
  if config.num_q < 2:
    raise ValueError(f"tdmpc.num_q ({config.num_q}) must be ≥ 2")
  if config.horizon < 1:
    raise ValueError(f"tdmpc.horizon ({config.horizon}) must be ≥ 1")
  mppi.validate(config.mppi)


# -- networks -------------------------------------------------------------------------------------

def simnorm(x: jax.Array, group: int) -> jax.Array:
  """Softmax over consecutive groups of `group` features: f32[..., L] -> f32[..., L]."""
  groups = x.reshape(x.shape[:-1] + (-1, group))
  return jax.nn.softmax(groups, axis=-1).reshape(x.shape)


def mish(x: jax.Array) -> jax.Array:
  return x * jnp.tanh(jax.nn.softplus(x))


class NormedMLP(nn.Module):
  """TD-MPC2's MLP: (Dense → [Dropout on the first layer] → LayerNorm → Mish) per hidden layer.

  The output layer is Dense → LayerNorm → SimNorm when `simnorm_group > 0`, else a plain Dense
  (zero-initialized when `zero_out`, as TD-MPC2 does for its reward and Q heads).
  """
  hidden: Sequence[int]
  out: int
  dropout: float = 0.0
  simnorm_group: int = 0
  zero_out: bool = False
  train: bool = False      # dropout active (needs a `dropout` RNG)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, width in enumerate(self.hidden):
      x = nn.Dense(width)(x)
      if i == 0 and self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not self.train)(x)
      x = mish(nn.LayerNorm()(x))
    if self.simnorm_group:
      return simnorm(nn.LayerNorm()(nn.Dense(self.out)(x)), self.simnorm_group)
    init = nn.initializers.zeros if self.zero_out else nn.initializers.lecun_normal()
    return nn.Dense(self.out, kernel_init=init)(x)


class WorldModel:
  """The TD-MPC2 components as Flax modules plus the pure functions on their parameters.

  `params = {"encoder", "dynamics", "reward", "pi", "q"}`; target Q parameters live beside them.
  Latents `z: f32[..., latent_dim]`, actions `a: f32[..., A]`.
  """

  def __init__(self, config: ml_collections.ConfigDict, obs_size: int, action_size: int):
    self.config = config
    self.obs_size = obs_size
    self.action_size = action_size
    self.bins = Bins(config.num_bins, config.vmin, config.vmax)
    latent, mlp, g = config.latent_dim, config.mlp_dim, config.simnorm_dim
    enc_hidden = (config.enc_dim,) * max(config.num_enc_layers - 1, 0)
    self.encoder = NormedMLP(enc_hidden, latent, simnorm_group=g)
    self.dynamics = NormedMLP((mlp, mlp), latent, simnorm_group=g)
    self.reward_head = NormedMLP((mlp, mlp), config.num_bins, zero_out=True)
    self.pi_head = NormedMLP((mlp, mlp), 2 * action_size)
    self.termination_head = NormedMLP((mlp, mlp), 1) if config.episodic else None
    # One Q head module; the ensemble is its parameters stacked on a leading axis of size num_q,
    # so a random pair of heads can be evaluated without running all of them.
    self.q_head = NormedMLP((mlp, mlp), config.num_bins, dropout=config.dropout, zero_out=True)
    self.q_head_train = NormedMLP((mlp, mlp), config.num_bins, dropout=config.dropout,
                                  zero_out=True, train=True)  # same parameters, dropout on

  def init(self, rng: jax.Array) -> dict:
    keys = jax.random.split(rng, 6)
    obs = jnp.zeros((self.obs_size,))
    z = jnp.zeros((self.config.latent_dim,))
    za = jnp.zeros((self.config.latent_dim + self.action_size,))
    params = {"encoder": self.encoder.init(keys[0], obs),
              "dynamics": self.dynamics.init(keys[1], za),
              "reward": self.reward_head.init(keys[2], za), "pi": self.pi_head.init(keys[3], z),
              "q": jax.vmap(lambda k: self.q_head.init(k, za))(
                  jax.random.split(keys[4], self.config.num_q))}
    if self.termination_head is not None:
      params["termination"] = self.termination_head.init(keys[5], z)
    return params

  def encode(self, params, obs: jax.Array) -> jax.Array:
    return self.encoder.apply(params["encoder"], obs)

  def next(self, params, z: jax.Array, a: jax.Array) -> jax.Array:
    return self.dynamics.apply(params["dynamics"], jnp.concatenate([z, a], axis=-1))

  def reward_logits(self, params, z: jax.Array, a: jax.Array) -> jax.Array:
    return self.reward_head.apply(params["reward"], jnp.concatenate([z, a], axis=-1))

  def reward(self, params, z: jax.Array, a: jax.Array) -> jax.Array:
    return self.bins.decode(self.reward_logits(params, z, a))

  def termination_logit(self, params, z: jax.Array) -> jax.Array:
    """Logit that the transition into latent `z: f32[..., L]` ended the episode: f32[...]."""
    return self.termination_head.apply(params["termination"], z)[..., 0]

  def q_logits(self, q_params, z: jax.Array, a: jax.Array, dropout_rng=None) -> jax.Array:
    """Logits of every head in `q_params`: f32[heads, ..., num_bins]; dropout iff `dropout_rng`."""
    x = jnp.concatenate([z, a], axis=-1)
    if dropout_rng is None:
      return jax.vmap(lambda p: self.q_head.apply(p, x))(q_params)
    heads = jax.tree.leaves(q_params)[0].shape[0]
    return jax.vmap(lambda p, k: self.q_head_train.apply(p, x, rngs={"dropout": k}))(
        q_params, jax.random.split(dropout_rng, heads))

  def q_pair(self, q_params, z: jax.Array, a: jax.Array, rng: jax.Array) -> jax.Array:
    """Values of two randomly chosen Q heads: f32[2, ...]."""
    idx = jax.random.permutation(rng, self.config.num_q)[:2]
    pair = jax.tree.map(lambda p: jnp.take(p, idx, axis=0), q_params)
    return self.bins.decode(self.q_logits(pair, z, a))

  def pi(self, params, z: jax.Array, rng: jax.Array | None):
    """(action, log π(action)): a sample when `rng` is given, else the mode (log π undefined)."""
    out = self.pi_head.apply(params["pi"], z)
    mean, raw_log_std = jnp.split(out, 2, axis=-1)
    lo, hi = self.config.log_std_min, self.config.log_std_max
    std = jnp.exp(lo + 0.5 * (hi - lo) * (jnp.tanh(raw_log_std) + 1.0))
    if rng is None:
      return dist.mode(mean), jnp.zeros(mean.shape[:-1])
    raw = dist.sample_raw(rng, mean, std)
    return dist.squash(raw), dist.log_prob(mean, std, raw)


@struct.dataclass
class TrainState:
  """Everything a run needs to continue bit for bit (the replay included)."""
  params: dict
  target_q: Any
  opt_state: dict             # {"model", "pi"}
  q_scale: jax.Array          # f32[], running 5–95 % range of Q (≥ 1) scaling the prior's loss
  num_updates: jax.Array      # i32[]
  obs_stats: running_stats.RunningStats
  replay: replay_lib.Replay
  env_state: Any
  plan_mean: jax.Array        # f32[num_envs, H, A]: warm start for the next control step
  episode_return: jax.Array   # f32[num_envs]
  episode_length: jax.Array   # f32[num_envs]
  rng: jax.Array
  iteration: jax.Array        # i32[]


class Learner:
  """Builds the jitted `init`, `iteration` and `evaluate` for one env and config on one mesh."""

  def __init__(self, env, config: ml_collections.ConfigDict, mesh: Mesh | None = None):
    self.mesh = mesh or mesh_lib.make_mesh({"data": -1})
    validate(config, self.mesh.devices.size)
    self.config = config
    self.env = env
    self.train_env = wrappers.wrap_for_training(env, config.episode_length, config.action_repeat)
    self.eval_env = evaluation.make_eval_env(env, config.episode_length, config.action_repeat)
    obs_sizes = env.observation_size
    if config.obs_key not in obs_sizes:
      raise KeyError(f"observation key '{config.obs_key}' not produced by the env "
                     f"(it has: {', '.join(sorted(obs_sizes))})")
    self.obs_shape = obs_sizes[config.obs_key]
    if len(self.obs_shape) != 1:
      raise ValueError(f"tdmpc needs a flat observation '{config.obs_key}', got shape {self.obs_shape}")
    self.action_size = env.action_size
    self.model = WorldModel(config, self.obs_shape[0], self.action_size)
    self.gamma = discount_for(config)
    self.min_replay = seed_transitions(config)
    self.pretrain_updates = (self.min_replay if config.pretrain_updates < 0
                             else int(config.pretrain_updates))
    self.per_env_batch = config.batch_size // config.num_envs
    self.model_opt = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                                 optax.adam(config.learning_rate))
    self.pi_opt = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                              optax.adam(config.learning_rate, eps=1e-5))
    self.env_steps_per_iteration = (config.num_envs * config.steps_per_iteration
                                    * config.action_repeat)

    batch = mesh_lib.sharding(self.mesh, "data")
    replicated = mesh_lib.replicated(self.mesh)
    abstract = jax.eval_shape(self._init, jax.random.PRNGKey(0))
    rep = lambda tree: jax.tree.map(lambda _: replicated, tree)
    self.state_sharding = TrainState(
        params=rep(abstract.params), target_q=rep(abstract.target_q),
        opt_state=rep(abstract.opt_state), q_scale=replicated, num_updates=replicated,
        obs_stats=rep(abstract.obs_stats), replay=replay_lib.sharding(abstract.replay, self.mesh),
        env_state=jax.tree.map(lambda _: batch, abstract.env_state), plan_mean=batch,
        episode_return=batch, episode_length=batch, rng=replicated, iteration=replicated)
    self.init = jax.jit(self._init, out_shardings=self.state_sharding)
    self.iteration = jax.jit(self._iteration, in_shardings=(self.state_sharding,),
                             out_shardings=(self.state_sharding, replicated), donate_argnums=0)
    self.evaluate = jax.jit(self._evaluate, static_argnums=2, out_shardings=replicated)
    self.act = jax.jit(self._act, static_argnames=("explore",))

  # -- init ---------------------------------------------------------------------------------------

  def _init(self, rng: jax.Array) -> TrainState:
    cfg = self.config
    k_net, k_env, k_run = jax.random.split(rng, 3)
    params = self.model.init(k_net)
    model_params = {k: v for k, v in params.items() if k != "pi"}
    example = {"obs": jnp.zeros(self.obs_shape), "next_obs": jnp.zeros(self.obs_shape),
               "action": jnp.zeros((self.action_size,)), "reward": jnp.zeros(()),
               "terminal": jnp.zeros(())}
    zeros = jnp.zeros((cfg.num_envs,))
    return TrainState(
        params=params, target_q=jax.tree.map(jnp.copy, params["q"]),
        opt_state={"model": self.model_opt.init(model_params),
                   "pi": self.pi_opt.init(params["pi"])},
        q_scale=jnp.ones(()), num_updates=jnp.zeros((), jnp.int32),
        obs_stats=running_stats.init({"obs": self.obs_shape}),
        replay=replay_lib.init(example, cfg.replay_capacity, cfg.num_envs),
        env_state=self.train_env.reset(jax.random.split(k_env, cfg.num_envs)),
        plan_mean=jnp.zeros((cfg.num_envs, cfg.horizon, self.action_size)),
        episode_return=zeros, episode_length=zeros, rng=k_run, iteration=jnp.zeros((), jnp.int32))

  # -- acting -------------------------------------------------------------------------------------

  def _normalize(self, stats, obs: jax.Array) -> jax.Array:
    if not self.config.normalize_observations:
      return obs
    return running_stats.normalize(stats, {"obs": obs})["obs"]

  def score_plans(self, params, z: jax.Array, plans: jax.Array, rng: jax.Array) -> jax.Array:
    """Model return of `plans: f32[n, H, A]` from latent `z: f32[L]`: f32[n].

    Σ_t γ^t R̂(z_t, a_t) + γ^H Q_avg(z_H, π(z_H)) over two random Q heads; with `episodic`, the
    terms after the first step into a latent with T(z) > 0 are dropped.
    """
    model, gamma = self.model, self.gamma
    latent = jnp.broadcast_to(z, (plans.shape[0],) + z.shape)

    def step(carry, action):
      latent, ret, disc, alive = carry          # alive: no termination predicted so far
      ret = ret + disc * alive * model.reward(params, latent, action)
      latent = model.next(params, latent, action)
      if self.config.episodic:
        alive = alive * (model.termination_logit(params, latent) <= 0.0)
      return (latent, ret, disc * gamma, alive), None

    zero, one = jnp.zeros(plans.shape[:1]), jnp.ones(plans.shape[:1])
    (latent, ret, disc, alive), _ = jax.lax.scan(step, (latent, zero, jnp.ones(()), one),
                                                 jnp.swapaxes(plans, 0, 1))
    k_pi, k_q = jax.random.split(rng)
    action, _ = model.pi(params, latent, k_pi)
    return ret + disc * alive * jnp.mean(model.q_pair(params["q"], latent, action, k_q), axis=0)

  def plan_one(self, params, z: jax.Array, init_mean: jax.Array, rng: jax.Array,
               explore: bool) -> mppi.Plan:
    """MPPI from one latent `z: f32[L]`, warm-started at `init_mean: f32[H, A]`."""
    cfg, model = self.config, self.model
    k_prior, k_plan = jax.random.split(rng)

    def prior_plans(key):
      def step(latent, k):
        action, _ = model.pi(params, latent, k)
        return model.next(params, latent, action), action
      keys = jax.random.split(key, cfg.horizon)
      latents = jnp.broadcast_to(z, (cfg.mppi.num_prior_samples,) + z.shape)
      _, actions = jax.lax.scan(step, latents, keys)          # [H, P, A]
      return jnp.swapaxes(actions, 0, 1)

    score = lambda plans, key: self.score_plans(params, z, plans, key)
    prior = prior_plans(k_prior) if cfg.mppi.num_prior_samples else None
    return mppi.plan(cfg.mppi, k_plan, score, init_mean, prior, explore=explore)

  def _act(self, params, stats, obs: jax.Array, plan_mean: jax.Array, rng: jax.Array,
           explore: bool = True):
    """Batched planning: `obs f32[B, O]`, `plan_mean f32[B, H, A]` -> (action f32[B, A], mean)."""
    z = self.model.encode(params, self._normalize(stats, obs))
    keys = jax.random.split(rng, obs.shape[0])
    plans = jax.vmap(lambda zi, mi, ki: self.plan_one(params, zi, mppi.shift(mi), ki, explore))(
        z, plan_mean, keys)
    return plans.action, plans.mean

  def _prior_act(self, params, stats, obs: jax.Array, rng: jax.Array | None):
    z = self.model.encode(params, self._normalize(stats, obs))
    return self.model.pi(params, z, rng)[0]

  # -- learning -----------------------------------------------------------------------------------

  def _model_loss(self, model_params, pi_params, target_q, stats, batch, valid, rng):
    """TD-MPC2's world-model loss on windows `[H, k, N, ...]` (`valid: bool[k, N]`)."""
    cfg, model = self.config, self.model
    params = {**model_params, "pi": pi_params}
    H = cfg.horizon
    k_pi, k_q, k_drop = jax.random.split(rng, 3)
    weight = valid.astype(jnp.float32)
    denom = jnp.maximum(jnp.sum(weight), 1.0)
    avg = lambda x: jnp.sum(x * weight) / denom              # mean over the batch [k, N]
    rho = cfg.rho ** jnp.arange(H)

    obs = self._normalize(stats, batch["obs"])
    next_obs = self._normalize(stats, batch["next_obs"])
    next_z = jax.lax.stop_gradient(model.encode(params, next_obs))            # [H, k, N, L]
    next_action, _ = model.pi(params, next_z, k_pi)
    next_q = jnp.min(model.q_pair(target_q, next_z, next_action, k_q), axis=0)
    td_target = jax.lax.stop_gradient(
        batch["reward"] + self.gamma * (1.0 - batch["terminal"]) * next_q)    # [H, k, N]

    def rollout(z, action):
      z_next = model.next(params, z, action)
      return z_next, (z, z_next)
    _, (zs, z_pred) = jax.lax.scan(rollout, model.encode(params, obs[0]), batch["action"])
    consistency = sum(rho[t] * avg(jnp.mean((z_pred[t] - next_z[t]) ** 2, axis=-1))
                      for t in range(H)) / H
    reward_ce = model.bins.cross_entropy(model.reward_logits(params, zs, batch["action"]),
                                         batch["reward"])
    reward_loss = sum(rho[t] * avg(reward_ce[t]) for t in range(H)) / H
    q_logits = model.q_logits(params["q"], zs, batch["action"], dropout_rng=k_drop)  # [Q, H, k, N, B]
    value_ce = model.bins.cross_entropy(q_logits, td_target[None])
    value_loss = sum(rho[t] * avg(jnp.sum(value_ce[:, t], axis=0)) for t in range(H)) / (H * cfg.num_q)
    total = (cfg.consistency_coef * consistency + cfg.reward_coef * reward_loss
             + cfg.value_coef * value_loss)
    metrics = {"loss/consistency": consistency, "loss/reward": reward_loss,
               "loss/value": value_loss, "tdmpc/td_target": avg(jnp.mean(td_target, axis=0)),
               "tdmpc/valid_windows": jnp.mean(weight)}
    if cfg.episodic:
      bce = optax.sigmoid_binary_cross_entropy(model.termination_logit(params, z_pred),
                                               batch["terminal"])                 # [H, k, N]
      metrics["loss/termination"] = sum(avg(bce[t]) for t in range(H)) / H
      total = total + cfg.termination_coef * metrics["loss/termination"]
    metrics["loss/model"] = total
    # The prior trains on every rollout latent, the last predicted one included (H + 1 of them).
    all_zs = jnp.concatenate([zs, z_pred[-1:]], axis=0)
    return total, (jax.lax.stop_gradient(all_zs), metrics)

  def _pi_loss(self, pi_params, params, zs, valid, q_scale, rng):
    """The prior's loss on the (detached) rollout latents `zs: f32[H+1, k, N, L]`.

    Q is divided by a running scale (TD-MPC2's `RunningScale`): the 5–95 percentile range of the
    first latent's Q (at least 1), tracked with rate `q_scale_tau`; its update is returned.
    """
    cfg, model = self.config, self.model
    k_pi, k_q = jax.random.split(rng)
    action, log_pi = model.pi({**params, "pi": pi_params}, zs, k_pi)
    q = jnp.mean(model.q_pair(jax.lax.stop_gradient(params["q"]), zs, action, k_q), axis=0)
    flat = jnp.where(valid, jax.lax.stop_gradient(q[0]), jnp.nan).reshape(-1)
    spread = jnp.nanpercentile(flat, 95.0) - jnp.nanpercentile(flat, 5.0)
    spread = jnp.maximum(jnp.where(jnp.isfinite(spread), spread, 1.0), 1.0)
    q_scale = q_scale + cfg.q_scale_tau * (spread - q_scale)
    weight = valid.astype(jnp.float32)
    per_step = jnp.sum((cfg.entropy_coef * log_pi - q / q_scale) * weight, axis=(1, 2))
    per_step = per_step / jnp.maximum(jnp.sum(weight), 1.0)
    rho = cfg.rho ** jnp.arange(zs.shape[0])
    return jnp.mean(per_step * rho), (q_scale, jnp.mean(-log_pi))

  def _update(self, state_parts, batch, valid, stats, rng):
    params, target_q, opt_state, q_scale, num_updates = state_parts
    cfg = self.config
    k_model, k_pi = jax.random.split(rng)
    model_params = {k: v for k, v in params.items() if k != "pi"}
    (_, (zs, metrics)), grads = jax.value_and_grad(self._model_loss, has_aux=True)(
        model_params, params["pi"], target_q, stats, batch, valid, k_model)
    updates, model_opt = self.model_opt.update(grads, opt_state["model"], model_params)
    updates["encoder"] = jax.tree.map(lambda u: u * cfg.encoder_lr_scale, updates["encoder"])
    model_params = optax.apply_updates(model_params, updates)
    params = {**model_params, "pi": params["pi"]}

    (pi_loss, (q_scale, entropy)), pi_grads = jax.value_and_grad(self._pi_loss, has_aux=True)(
        params["pi"], params, zs, valid, q_scale, k_pi)
    pi_updates, pi_opt = self.pi_opt.update(pi_grads, opt_state["pi"], params["pi"])
    params = {**params, "pi": optax.apply_updates(params["pi"], pi_updates)}
    target_q = jax.tree.map(lambda t, o: (1.0 - cfg.tau) * t + cfg.tau * o, target_q, params["q"])
    metrics.update({"loss/pi": pi_loss, "loss/total": metrics["loss/model"] + pi_loss,
                    "tdmpc/q_scale": q_scale, "tdmpc/pi_entropy": entropy,
                    "grad_norm/model": optax.global_norm(grads)})
    return (params, target_q, {"model": model_opt, "pi": pi_opt}, q_scale, num_updates + 1), metrics

  def _learn(self, parts, stats, replay, rng, num_updates: jax.Array, template: dict):
    """`num_updates` (traced i32[]) gradient updates; returns the parts and the mean metrics."""
    def body(i, carry):
      parts, sums = carry
      k_sample, k_update = jax.random.split(jax.random.fold_in(rng, i))
      batch, valid = replay_lib.sample_windows(replay, k_sample, self.per_env_batch,
                                               self.config.horizon)
      parts, metrics = self._update(parts, batch, valid, stats, k_update)
      return parts, jax.tree.map(jnp.add, sums, metrics)
    parts, sums = jax.lax.fori_loop(0, num_updates, body, (parts, template))
    return parts, jax.tree.map(lambda x: x / jnp.maximum(num_updates, 1), sums)

  def _iteration(self, state: TrainState) -> tuple[TrainState, dict]:
    cfg = self.config
    parts0 = (state.params, state.target_q, state.opt_state, state.q_scale, state.num_updates)
    batch0, valid0 = jax.eval_shape(
        lambda r, k: replay_lib.sample_windows(r, k, self.per_env_batch, cfg.horizon),
        state.replay, state.rng)
    template = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype),
        jax.eval_shape(self._update, parts0, batch0, valid0, state.obs_stats, state.rng)[1])
    rng, k_steps = jax.random.split(state.rng)

    def env_step(carry, key):
      parts, stats, replay, env_state, plan_mean, ep_return, ep_length, done_stats = carry
      params = parts[0]
      k_act, k_learn = jax.random.split(key)
      learning = replay.num_transitions >= self.min_replay
      # TD-MPC2 pretrains on the seed data when learning starts, then does its per-step updates.
      first = learning & (replay.num_transitions - cfg.num_envs < self.min_replay)
      num_updates = jnp.where(first, self.pretrain_updates, cfg.grad_updates_per_step)
      obs = env_state.obs[cfg.obs_key]

      def policy_action():
        if cfg.plan_during_training:
          return self._act(params, stats, obs, plan_mean, k_act, explore=True)
        return self._prior_act(params, stats, obs, k_act), plan_mean

      def random_action():
        shape = (cfg.num_envs, self.action_size)
        return jax.random.uniform(k_act, shape, minval=-1.0, maxval=1.0), plan_mean

      action, new_mean = jax.lax.cond(learning, policy_action, random_action)
      next_state = self.train_env.step(env_state, action)
      done = next_state.done
      row = {"obs": obs, "next_obs": next_state.info["final_obs"][cfg.obs_key], "action": action,
             "reward": next_state.reward, "terminal": done * (1.0 - next_state.info["truncation"])}
      replay = replay_lib.insert(replay, row, done)
      if cfg.normalize_observations:
        stats = running_stats.update(stats, {"obs": obs})
      plan_mean = jnp.where(done[:, None, None] > 0, 0.0, new_mean)
      parts, metrics = jax.lax.cond(
          learning, lambda: self._learn(parts, stats, replay, k_learn, num_updates, template),
          lambda: (parts, template))
      ep_return, ep_length, done_stats = loop.track_episodes(ep_return, ep_length, done_stats,
                                                             next_state.reward, done)
      carry = (parts, stats, replay, next_state, plan_mean, ep_return, ep_length, done_stats)
      return carry, (metrics, learning, next_state.reward)

    carry = (parts0, state.obs_stats, state.replay, state.env_state, state.plan_mean,
             state.episode_return, state.episode_length, loop.episode_totals())
    carry, (metrics, learning, rewards) = jax.lax.scan(
        env_step, carry, jax.random.split(k_steps, cfg.steps_per_iteration))
    parts, stats, replay, env_state, plan_mean, ep_return, ep_length, done_stats = carry
    params, target_q, opt_state, q_scale, num_updates = parts
    metrics = loop.masked_mean(metrics, learning)
    metrics.update(loop.episode_metrics(done_stats))
    metrics.update({
        "rollout/reward": jnp.mean(rewards),
        "replay/transitions": replay.num_transitions.astype(jnp.float32),
        "tdmpc/learning_fraction": jnp.mean(learning.astype(jnp.float32)),
    })
    new_state = TrainState(params=params, target_q=target_q, opt_state=opt_state, q_scale=q_scale,
                           num_updates=num_updates, obs_stats=stats, replay=replay,
                           env_state=env_state, plan_mean=plan_mean,
                           episode_return=ep_return,
                           episode_length=ep_length, rng=rng, iteration=state.iteration + 1)
    return new_state, metrics

  # -- evaluation ---------------------------------------------------------------------------------

  def _evaluate(self, state: TrainState, rng: jax.Array, num_envs: int) -> dict:
    """One episode of `num_envs` fresh envs: MPPI without exploration noise (or the prior's mode)."""
    cfg = self.config

    def act(plan_mean, obs, key):
      obs = obs[cfg.obs_key]
      if cfg.plan_during_eval:
        return self._act(state.params, state.obs_stats, obs, plan_mean, key, explore=False)
      return self._prior_act(state.params, state.obs_stats, obs, None), plan_mean

    init = jnp.zeros((num_envs, cfg.horizon, self.action_size))
    return evaluation.evaluate(self.eval_env, act, init, rng, num_envs, cfg.episode_length)


# -- deployment -----------------------------------------------------------------------------------

class Policy:
  """A trained TD-MPC agent as `policy(obs) -> action f32[..., A]` in [-1, 1].

  With `plan=True` each call runs MPPI without exploration noise (as in evaluation) from the
  encoded observation, warm-started by the previous call's plan; call `reset()` when a new episode
  starts. The planner samples, so the policy carries an RNG key (seeded by `seed`). With
  `plan=False` it is the prior's mode, tanh(mean of π(h(o))), and holds no state.

  `step(obs f32[B, O], plan_mean f32[B, H, A], rng) -> (action f32[B, A], plan_mean)` is the pure
  jitted planning step behind it (the learner's own `act(..., explore=False)`).
  """

  def __init__(self, learner: "Learner", params: dict, obs_stats, plan: bool, seed: int,
               info: dict):
    self.info = info
    self.plan = plan
    self._learner, self._params, self._stats = learner, params, obs_stats
    self._shape = tuple(learner.obs_shape)
    self.step = jax.jit(lambda obs, mean, rng: learner._act(  # pylint: disable=protected-access
        params, obs_stats, obs, mean, rng, explore=False))
    self._prior = jax.jit(lambda obs: learner._prior_act(  # pylint: disable=protected-access
        params, obs_stats, obs, None))
    self._seed = seed
    self.reset()

  def reset(self) -> None:
    """Starts a new episode: no warm start, the RNG back at its seed."""
    self._rng = jax.random.PRNGKey(self._seed)
    self._mean = None

  def __call__(self, obs: dict) -> jax.Array:
    x = loop.checked_observation(obs, self._learner.config.obs_key, self._shape)
    unbatched = x.ndim == 1
    x = x[None] if unbatched else x.reshape((-1,) + self._shape)
    if not self.plan:
      action = self._prior(x)
    else:
      shape = (x.shape[0], self._learner.config.horizon, self._learner.action_size)
      if self._mean is None or self._mean.shape != shape:
        self._mean = jnp.zeros(shape)
      self._rng, key = jax.random.split(self._rng)
      action, self._mean = self.step(x, self._mean, key)
    return action[0] if unbatched else action.reshape(obs[self._learner.config.obs_key].shape[:-1]
                                                      + (self._learner.action_size,))


def load_policy(path, step: int | None = None, plan: bool = True, seed: int = 0):
  """The policy of a TD-MPC run directory (or its `checkpoints/`) for deployment.

  Returns `(policy, info)`: `policy` a `Policy` (MPPI planning over the learned model, or with
  `plan=False` the policy prior's mode), `info` `loop.policy_info`'s (`config`, the run's config as a
  dict, `step`, `obs_key`, `observation_size`, `action_size`, `action_horizon`, `action_repeat`,
  `control_hz`) and `plan`. The model parameters and the observation
  normalizer are read from the checkpoint (not the replay or optimizer state).
  """
  checkpointer, step, run_config, env, config = loop.open_run(path, "tdmpc", step)
  learner = Learner(env, config, mesh_lib.make_mesh({"data": 1}, devices=jax.devices()[:1]))
  target = {"params": jax.eval_shape(learner.model.init, jax.random.PRNGKey(0)),
            "obs_stats": jax.eval_shape(lambda: running_stats.init({"obs": learner.obs_shape}))}
  restored = checkpointer.restore(target, step=step, partial=True)
  checkpointer.close()
  info = dict(loop.policy_info(env, run_config, step, config.obs_key,
                               config.get("action_repeat", 1)), plan=plan)
  return Policy(learner, restored["params"], restored["obs_stats"], plan, seed, info), info
