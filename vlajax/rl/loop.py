"""The outer training loop shared by the RL learners: resume, iterate, evaluate, log, checkpoint.

A learner provides `init(rng) -> state`, jitted `iteration(state) -> (state, metrics)`,
`evaluate(state, rng, num_envs) -> metrics`, `env_steps_per_iteration`, and the state must be a
flax dataclass with an `iteration` counter. Checkpoints hold the whole state (parameters,
optimizer, normalizer, env states, RNG, counters), so a resumed run continues bit for bit.

Run config keys (see `run_config()`): seed, resume, eval_every, num_eval_envs, checkpoint_every,
keep_checkpoints, log_every, and the metric writers' `loggers` and `wandb` (`metrics.logger_config()`).
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vlajax.core import mesh as mesh_lib
from vlajax.core.checkpoint import Checkpointer
from vlajax.core import metrics as metrics_lib
from vlajax.core.metrics import MetricWriter
from vlajax.rl import distributions as dist
from vlajax.rl import running_stats


def run_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict({
      "seed": 0,
      "resume": True,           # continue from the newest checkpoint in workdir when there is one
      "eval_every": 10,         # iterations; 0 = only at the end
      "num_eval_envs": 64,
      "checkpoint_every": 20,   # iterations; a final checkpoint is always written
      "keep_checkpoints": 3,
      "log_every": 1,
  })
  config.update(metrics_lib.logger_config())   # loggers ("jsonl,tensorboard"; + "wandb"), wandb
  return config


def state_to_dict(state) -> dict:
  """A dataclass train state as a top-level dict (so subsets can be restored by key)."""
  return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def state_from_dict(cls, tree: dict):
  return cls(**tree)


class NonFiniteLossError(FloatingPointError):
  """Raised when a training iteration produces a non-finite loss; no checkpoint is written."""


def train(learner, run: ml_collections.ConfigDict, workdir: str | pathlib.Path, num_iterations: int,
          metadata: dict | None = None, extra_metrics: Callable[[Any], dict] | None = None,
          after_iteration: Callable[[Any, dict], Any] | None = None, stream=sys.stdout):
  """Runs `num_iterations` iterations of `learner` (resuming from `workdir`); returns the state.

  `after_iteration(state, metrics) -> state` runs on the host after each logged iteration (e.g. to
  update automatic domain randomization); `extra_metrics(state) -> dict` adds logged scalars.
  """
  workdir = pathlib.Path(workdir)
  checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=run.keep_checkpoints)
  seed_key = jax.random.PRNGKey(run.seed)
  state = mesh_lib.compiled_together(learner.init, "init", seed_key)(seed_key)
  cls = type(state)
  if run.resume and checkpointer.latest_step() is not None:
    state = state_from_dict(cls, checkpointer.restore(state_to_dict(state)))
  start = int(jax.device_get(state.iteration))
  steps_per_iteration = learner.env_steps_per_iteration
  writer = MetricWriter(workdir, total_steps=num_iterations * steps_per_iteration, stream=stream,
                        loggers=run.get("loggers"), wandb=run.get("wandb"),
                        config=(metadata or {}).get("config"))
  eval_key = jax.random.PRNGKey(run.seed + 1)
  iteration = mesh_lib.compiled_together(learner.iteration, "iteration", state)
  if jax.process_count() > 1:
    compiled_eval = learner.evaluate.lower(state, eval_key, run.num_eval_envs).compile()
    mesh_lib.barrier("compiled_evaluate")
    evaluate = lambda s, k: compiled_eval(s, k)  # pylint: disable=unnecessary-lambda
  else:
    evaluate = lambda s, k: learner.evaluate(s, k, run.num_eval_envs)
  metadata = dict(metadata or {})

  def save(it: int):
    checkpointer.save(it, state_to_dict(state), {**metadata, "iteration": it,
                                                 "env_steps": it * steps_per_iteration})

  tic, tic_iteration = time.time(), start
  start_time = time.time()
  for it in range(start + 1, num_iterations + 1):
    state, metrics = iteration(state)
    loss = float(jax.device_get(metrics["loss/total"]))
    if not np.isfinite(loss):
      checkpointer.close()
      writer.close()
      last = checkpointer.latest_step()
      raise NonFiniteLossError(
          f"non-finite loss ({loss}) at iteration {it}; stopped without saving. The last good "
          f"checkpoint is step {last} in {checkpointer.directory}")
    if after_iteration is not None:
      state = after_iteration(state, metrics)
    log_now = it % max(run.log_every, 1) == 0 or it == num_iterations
    eval_now = (run.eval_every and it % run.eval_every == 0) or it == num_iterations
    if log_now or eval_now:
      metrics = jax.device_get(metrics)
      jax.block_until_ready(state)
      now = time.time()
      metrics = dict(metrics)
      metrics["perf/env_steps_per_s"] = (it - tic_iteration) * steps_per_iteration / max(now - tic, 1e-9)
      metrics["perf/wall_time_s"] = now - start_time
      metrics["env_steps"] = it * steps_per_iteration
      if extra_metrics is not None:
        metrics.update(extra_metrics(state))
      if eval_now:
        metrics.update(jax.device_get(evaluate(state, jax.random.fold_in(eval_key, it))))
      writer.write(it * steps_per_iteration, metrics)
      tic, tic_iteration = time.time(), it
    if (run.checkpoint_every and it % run.checkpoint_every == 0) or it == num_iterations:
      save(it)
  checkpointer.close()
  writer.close()
  return state


# -- shared pieces of the learners' iterations and deployment --------------------------------------

def episode_totals() -> tuple[jax.Array, jax.Array, jax.Array]:
  """Zero sums (return, length, count) of the episodes finished within an iteration."""
  zero = jnp.zeros(())
  return zero, zero, zero


def track_episodes(ep_return: jax.Array, ep_length: jax.Array, totals: tuple, reward: jax.Array,
                   done: jax.Array):
  """Adds one batched env step to the running episode statistics.

  `ep_return, ep_length, reward, done: f32[num_envs]`; `totals` as from `episode_totals()`.
  Returns `(ep_return, ep_length, totals)` with finished episodes added to `totals` and reset.
  """
  ep_return = ep_return + reward
  ep_length = ep_length + 1.0
  totals = (totals[0] + jnp.sum(done * ep_return), totals[1] + jnp.sum(done * ep_length),
            totals[2] + jnp.sum(done))
  return ep_return * (1.0 - done), ep_length * (1.0 - done), totals


def episode_metrics(totals: tuple) -> dict:
  """`episode/return`, `episode/length` (NaN when no episode finished) and `episode/finished`."""
  total_return, total_length, finished = totals
  count = jnp.maximum(finished, 1.0)
  return {"episode/return": jnp.where(finished > 0, total_return / count, jnp.nan),
          "episode/length": jnp.where(finished > 0, total_length / count, jnp.nan),
          "episode/finished": finished}


def masked_mean(metrics: dict, mask: jax.Array) -> dict:
  """Mean over the leading (step) axis of each metric, counting only steps where `mask` holds."""
  weight = mask.astype(jnp.float32)
  denom = jnp.maximum(jnp.sum(weight), 1.0)
  return jax.tree.map(lambda m: jnp.sum(m * weight) / denom, metrics)


def open_run(path: str | pathlib.Path, section: str, step: int | None = None):
  """Reads a run directory (or its `checkpoints/`) written by `train` for deployment.

  Returns `(checkpointer, step, run_config: dict, env, learner_config: ConfigDict)`, where
  `learner_config` is `run_config[section]` (e.g. "sac"); the caller restores the subset of the
  train state it needs and closes the checkpointer.
  """
  from vlajax import envs  # pylint: disable=import-outside-toplevel

  path = pathlib.Path(path)
  ckpt_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
  if not ckpt_dir.is_dir():
    raise FileNotFoundError(f"no run directory or checkpoint directory at {path}")
  checkpointer = Checkpointer(ckpt_dir, max_to_keep=None)
  step = checkpointer.latest_step() if step is None else step
  meta = checkpointer.metadata(step)
  config = meta.get("config")
  if not config:
    raise ValueError(f"checkpoint in {ckpt_dir} has no run config in its metadata")
  for key in ("env_name", "env", section):
    if key not in config:
      raise ValueError(f"the run config of {ckpt_dir} has no '{key}' entry (is it a {section} run?)")
  env = envs.make(config["env_name"], config=ml_collections.ConfigDict(config["env"]))
  return checkpointer, step, config, env, ml_collections.ConfigDict(config[section])


def checked_observation(obs: dict, key: str, expected: tuple) -> jax.Array:
  """`obs[key]` as f32[..., *expected] for a deployed policy; a clear error for a missing key or a
  wrong shape."""
  if key not in obs:
    raise KeyError(f"observation is missing '{key}' (got: {', '.join(sorted(obs))})")
  x = jnp.asarray(obs[key], jnp.float32)
  if x.ndim < len(expected) or x.shape[x.ndim - len(expected):] != tuple(expected):
    raise ValueError(f"observation '{key}' has shape {x.shape}, expected (..., "
                     f"{', '.join(map(str, expected))})")
  return x


def validate_batching(section: str, config: ml_collections.ConfigDict, num_devices: int) -> None:
  """The batch-shape checks every learner shares, with errors naming `<section>.<key>`:
  `num_envs` divisible by the devices; `reset_refresh` >= 1 or < 0; when the config has them,
  `batch_size` and `replay_capacity` multiples of `num_envs` (each env column of the replay gives
  an equal share)."""
  if config.num_envs % num_devices:
    raise ValueError(f"{section}.num_envs ({config.num_envs}) must be divisible by the number of "
                     f"devices ({num_devices})")
  if config.get("reset_refresh") == 0:
    raise ValueError(f"{section}.reset_refresh (0) must be >= 1 (env steps between redraws of the "
                     "auto-reset pool) or < 0 (once per iteration)")
  for key in ("batch_size", "replay_capacity"):
    if key in config and config[key] % config.num_envs:
      raise ValueError(f"{section}.{key} ({config[key]}) must be a multiple of {section}.num_envs "
                       f"({config.num_envs}): every env column contributes an equal share")


def policy_info(env, run_config: dict, step: int, obs_key: str, action_repeat: int = 1) -> dict:
  """The `info` of an RL loader (the keys every loader shares, `vlajax.eval.policies`): `config`,
  `step`, `obs_key`, `observation_size`, `action_size`, `action_horizon` (1: one action per
  decision), `action_repeat` (env steps each action is held, as in training) and `control_hz` (the
  decision rate, `1 / (env.dt * action_repeat)`)."""
  return {"config": run_config, "step": step, "obs_key": obs_key,
          "observation_size": env.observation_size, "action_size": env.action_size,
          "action_horizon": 1, "action_repeat": int(action_repeat),
          "control_hz": 1.0 / (float(env.dt) * int(action_repeat))}


def deterministic_policy(distribution: Callable, params, stats, normalize: bool, obs_key: str,
                         env, run_config: dict, step: int, obs_clip: float | None = 10.0,
                         action_repeat: int = 1):
  """A loader's `(policy, info)` for a tanh-Gaussian actor: `policy(obs) -> f32[..., A]` in [-1, 1]
  is the jitted mode `tanh(mean)` of `distribution(params, obs_dict) -> (mean, std)`, with the
  observation normalized by `stats` (clipped to +-`obs_clip`) when `normalize`; it takes the env's observation dict
  (unbatched or batched) and checks `obs_key` and its shape. `info` is `policy_info`'s."""
  @jax.jit
  def act(obs: jax.Array) -> jax.Array:
    obs = {obs_key: obs}
    if normalize:
      obs = running_stats.normalize(stats, obs, clip=obs_clip)
    mean, _ = distribution(params, obs)
    return dist.mode(mean)

  obs_sizes = env.observation_size
  expected = tuple(obs_sizes[obs_key])
  policy = lambda obs: act(checked_observation(obs, obs_key, expected))
  return policy, policy_info(env, run_config, step, obs_key, action_repeat)


def run_experiment(config: ml_collections.ConfigDict, section: str, make_learner: Callable,
                   title: str):
  """The body of an RL entry point (`experiments/<learner>_control.py`) for a resolved config.

  Joins the multi-host job (`config.distributed`) or, on one host, splits the CPU into
  `config.cpu_devices` devices (0: one per core, `mesh_lib.split_cpu`), builds the env (`config.env_name`, `config.env`)
  and mesh (`config.mesh`), the learner `make_learner(env, config[section], mesh)` (plus
  `adr_config=config.adr` when the config has an `adr` section: automatic DR, `envs/adr.py`),
  writes the run directory `config.workdir` and trains for `config[section].num_iterations` iterations with the
  run config (`config.run`) in each checkpoint's metadata (what `load_policy` reads back).
  """
  from vlajax import envs  # pylint: disable=import-outside-toplevel
  from vlajax.core.metrics import prepare_run_dir  # pylint: disable=import-outside-toplevel

  metrics_lib.parse_loggers(config.run.get("loggers"))   # a bad name fails before any compile
  hosts = config.distributed
  if hosts.num_processes > 1:
    mesh_lib.initialize_distributed(hosts.coordinator_address, hosts.num_processes,
                                    hosts.process_id)
  else:
    mesh_lib.split_cpu(config.get("cpu_devices", 0),
                       divides=(config[section].num_envs, config.run.num_eval_envs))
  env = envs.make(config.env_name, config=config.env)
  mesh = mesh_lib.make_mesh(dict(config.mesh))
  extra = {"adr_config": config.adr} if "adr" in config else {}
  learner = make_learner(env, config[section], mesh, **extra)
  workdir = prepare_run_dir(config.workdir, config)
  print(f"{title} on {config.env_name}: {mesh.devices.size} device(s), "
        f"{learner.env_steps_per_iteration:,} env steps per iteration, run dir {workdir}")
  return train(learner, config.run, workdir, config[section].num_iterations,
               metadata={"config": config.to_dict()})
