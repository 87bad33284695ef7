"""brax's PPO vs ours on the same env, hyperparameters and budget, in one process; prints JSON.

For each env (brax's MJX `reacher`, our `quadruped_joystick`):
  * brax PPO (`brax.training.agents.ppo.train`) and ours, same num_envs / unroll / minibatches /
    epochs / lr / entropy / γ / λ / clip / networks / observation normalization / env steps;
  * env steps/s of each (after compilation) and the ratio ours / brax;
  * final deterministic evaluation return of each;
  * our raw jitted, vmapped env-step throughput at the same batch, and learner / raw.

  python benchmarks/ppo_vs_brax.py                       # CPU-sized default
  python benchmarks/ppo_vs_brax.py --num_envs=8192 --iterations=30 --minibatches=32   # GPU

brax 0.14.2 calls `jax.device_put_replicated`, which current JAX removed; the one-line shim
`vlajax.envs.brax_adapter.install_device_put_replicated()` restores it. brax's training wrapper
caches the first state for auto-resets, so for our quadruped its DR draws are not re-drawn at
reset (ours are): the physics cost per step is the same.
"""
from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.envs import brax_adapter, wrappers
from vlajax.rl import ppo


def make_env(name: str, episode_length: int):
  """(our env, the env handed to brax) for `name`."""
  if name == "reacher":
    from brax import envs as brax_envs  # pylint: disable=import-outside-toplevel
    brax_env = brax_envs.get_environment("reacher", backend="mjx")
    return brax_adapter.from_brax(brax_env), brax_env
  ours = envs.make(name, episode_length=episode_length)
  return ours, envs.to_brax(ours)


def raw_throughput(env, num_envs: int, steps: int) -> float:
  """Env steps/s of jitted, vmapped `step` (episode + auto-reset wrappers) with random actions."""
  train_env = wrappers.wrap_for_training(env, episode_length=1000)
  state = jax.jit(train_env.reset)(jax.random.split(jax.random.PRNGKey(0), num_envs))

  @jax.jit
  def run(state, key):
    def body(s, k):
      a = jax.random.uniform(k, (num_envs, env.action_size), minval=-1, maxval=1)
      return train_env.step(s, a), None
    return jax.lax.scan(body, state, jax.random.split(key, steps))[0]

  jax.block_until_ready(run(state, jax.random.PRNGKey(1)))
  tic = time.perf_counter()
  jax.block_until_ready(run(state, jax.random.PRNGKey(2)))
  return num_envs * steps / (time.perf_counter() - tic)


def run_ours(env, hp: dict, iterations: int) -> dict:
  cfg = ppo.default_config()
  cfg.update(dict(num_envs=hp["num_envs"], unroll_length=hp["unroll"],
                  num_minibatches=hp["minibatches"], num_epochs=hp["epochs"],
                  learning_rate=hp["lr"], entropy_coef=hp["entropy"], gamma=hp["gamma"],
                  gae_lambda=0.95, clip_eps=0.3, max_grad_norm=1.0, clip_value_loss=False,
                  policy_hidden=hp["hidden"], value_hidden=hp["hidden"],
                  episode_length=hp["episode_length"], num_iterations=iterations,
                  value_obs_key=hp["value_obs_key"]))
  learner = ppo.Learner(env, cfg, mesh_lib.make_mesh({"data": -1}))
  state = learner.init(jax.random.PRNGKey(0))
  state, _ = learner.iteration(state)  # compile
  jax.block_until_ready(state)
  tic = time.perf_counter()
  for _ in range(iterations - 1):
    state, _ = learner.iteration(state)
  jax.block_until_ready(state)
  seconds = time.perf_counter() - tic
  ret = float(learner.evaluate(state, jax.random.PRNGKey(7), hp["eval_envs"])["eval/episode_return"])
  return {"env_steps_per_s": (iterations - 1) * learner.env_steps_per_iteration / seconds,
          "train_seconds": seconds, "final_eval_return": ret,
          "env_steps": iterations * learner.env_steps_per_iteration}


def run_brax(brax_env, hp: dict, iterations: int) -> dict:
  brax_adapter.install_device_put_replicated()
  from brax.training.agents.ppo import networks as ppo_networks  # pylint: disable=import-outside-toplevel
  from brax.training.agents.ppo import train as brax_ppo  # pylint: disable=import-outside-toplevel
  obs_keys = {}
  if hp["value_obs_key"] == "privileged_state":
    obs_keys = dict(policy_obs_key="state", value_obs_key="privileged_state")
  factory = functools.partial(ppo_networks.make_ppo_networks,
                              policy_hidden_layer_sizes=hp["hidden"],
                              value_hidden_layer_sizes=hp["hidden"], **obs_keys)
  steps_per_iteration = hp["num_envs"] * hp["unroll"]
  batch_size = hp["num_envs"] // hp["minibatches"]
  progress = []
  # num_evals=3: an evaluation before training and after each of two training epochs. brax's
  # `training/sps` covers one epoch's training; the first includes compilation, so the second is used.
  kwargs = dict(environment=brax_env, num_timesteps=iterations * steps_per_iteration,
                episode_length=hp["episode_length"], num_envs=hp["num_envs"],
                batch_size=batch_size, num_minibatches=hp["minibatches"],
                unroll_length=hp["unroll"], num_updates_per_batch=hp["epochs"],
                learning_rate=hp["lr"], entropy_cost=hp["entropy"], discounting=hp["gamma"],
                gae_lambda=0.95, clipping_epsilon=0.3, max_grad_norm=1.0,
                normalize_observations=True, num_evals=3, num_eval_envs=hp["eval_envs"],
                max_devices_per_host=1, network_factory=factory, seed=0,
                progress_fn=lambda step, metrics: progress.append((step, metrics)))
  brax_ppo.train(**kwargs)
  sps = [m["training/sps"] for _, m in progress if "training/sps" in m]
  return {"env_steps_per_s": float(sps[-1]) if sps else float("nan"),
          "final_eval_return": float(progress[-1][1]["eval/episode_reward"]),
          "env_steps": int(progress[-1][0])}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--envs", default="reacher,quadruped_joystick")
  parser.add_argument("--num_envs", type=int, default=128)
  parser.add_argument("--unroll", type=int, default=20)
  parser.add_argument("--minibatches", type=int, default=4)
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--iterations", type=int, default=6)
  parser.add_argument("--episode_length", type=int, default=1000)
  parser.add_argument("--hidden", default="128,128")
  parser.add_argument("--eval_envs", type=int, default=16)
  args = parser.parse_args()
  hidden = tuple(int(h) for h in args.hidden.split(","))
  results = {"device": str(jax.devices()[0].device_kind), "num_devices": jax.device_count(),
             "jax": jax.__version__, "envs": {}}
  for name in args.envs.split(","):
    ours_env, brax_env = make_env(name, args.episode_length)
    hp = dict(num_envs=args.num_envs, unroll=args.unroll, minibatches=args.minibatches,
              epochs=args.epochs, lr=3e-4, entropy=1e-2, gamma=0.97, hidden=hidden,
              episode_length=args.episode_length, eval_envs=args.eval_envs,
              value_obs_key="privileged_state" if name != "reacher" else "state")
    raw = raw_throughput(ours_env, args.num_envs, args.unroll)
    ours = run_ours(ours_env, hp, args.iterations)
    theirs = run_brax(brax_env, hp, args.iterations)
    results["envs"][name] = {
        "hyperparameters": {k: v for k, v in hp.items()}, "iterations": args.iterations,
        "ours": ours, "brax": theirs, "raw_env_steps_per_s": raw,
        "ratio_steps_per_s_ours_over_brax": ours["env_steps_per_s"] / theirs["env_steps_per_s"],
        "learner_over_raw_env": ours["env_steps_per_s"] / raw,
    }
    print(json.dumps({name: results["envs"][name]}, default=float), flush=True)
  print(json.dumps(results, default=float, indent=1))


if __name__ == "__main__":
  main()
