"""brax's SAC vs ours on the same env, hyperparameters and env-step budget, in one process; prints JSON.

For each env (default: our `cartpole` balance, episode length 200; also brax's MJX `reacher`):
  * brax SAC (`brax.training.agents.sac.train`) and ours (`vlajax.rl.sac`), same num_envs / batch /
    gradient updates per env step / replay size / min replay / lr / γ / τ / reward scaling /
    network sizes (ReLU, LayerNorm Q) / observation normalization / env steps;
  * env steps/s of each after compilation, and the ratio ours / brax (goal ≥ 1); brax's is the
    median of its `training/sps` over epochs 3.. of `--brax_epochs` (its first two may compile);
  * final deterministic evaluation return of each (goal: ours ≥ brax).

  python benchmarks/sac_vs_brax.py                              # CPU-sized default (cart-pole)
  python benchmarks/sac_vs_brax.py --envs=cartpole,reacher --num_envs=128 --batch_size=512 \
      --grad_updates=8 --steps=400000 --hidden=256,256        # accelerator-sized

brax's SAC needs array observations, so cart-pole is handed to brax through `envs.to_brax` with its
`state` entry as the observation; brax 0.14.2 also needs `install_device_put_replicated()`. brax's
replay `jnp.roll`s the whole buffer per insert when full, ours writes one row in place. brax's
auto-reset puts a finished env back to its cached first state; ours gives it a fresh draw from a
pool redrawn once per iteration, before the iteration's scan (`--reset_refresh=1`: a batched
reset at every step where an env finished, our SAC's behaviour before 2026-11-26, which cost a
second physics step on a GPU). `--reset_refresh=-1,50` (50 = `--steps_per_iteration`) also times
the pool redrawn by a cond inside the scanned step (its code path before 2026-11-26).
"""
from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import numpy as np

from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.envs import brax_adapter
from vlajax.rl import sac
from progress_log import log


class _StateObsBrax(brax_adapter.BraxEnv):
  """Our env for brax's SAC: the `state` observation as a flat array."""

  def reset(self, rng):
    state = super().reset(rng)
    return state.replace(obs=state.obs["state"])

  def step(self, state, action):
    state = super().step(state, action)
    return state.replace(obs=state.obs["state"])

  @property
  def observation_size(self):
    return self._env.observation_size["state"][0]


def make_env(name: str, episode_length: int):
  """(our env, the env handed to brax) for `name`."""
  if name == "reacher":
    from brax import envs as brax_envs  # pylint: disable=import-outside-toplevel
    brax_env = brax_envs.get_environment("reacher", backend="mjx")
    return brax_adapter.from_brax(brax_env), brax_env
  ours = envs.make(name, episode_length=episode_length)
  return ours, _StateObsBrax(ours)


def run_ours(env, hp: dict) -> dict:
  cfg = sac.default_config()
  steps_per_iteration = hp["steps_per_iteration"]
  iterations = max(hp["steps"] // (hp["num_envs"] * steps_per_iteration), 2)
  cfg.update(dict(num_envs=hp["num_envs"], batch_size=hp["batch_size"],
                  grad_updates_per_step=hp["grad_updates"], replay_capacity=hp["replay"],
                  min_replay=hp["min_replay"], learning_rate=hp["lr"], gamma=hp["gamma"],
                  tau=hp["tau"], reward_scaling=hp["reward_scaling"], actor_hidden=hp["hidden"],
                  critic_hidden=hp["hidden"], critic_layer_norm=True, activation="relu",
                  episode_length=hp["episode_length"], steps_per_iteration=steps_per_iteration,
                  num_iterations=iterations, normalize_observations=True,
                  target_entropy_scale=-0.5, reset_refresh=hp["reset_refresh"]))
  learner = sac.Learner(env, cfg, mesh_lib.make_mesh({"data": -1}))
  state = learner.init(jax.random.PRNGKey(0))
  tic = time.perf_counter()
  state, _ = learner.iteration(state)  # compile
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - tic
  log(f"ours: first iteration done ({compile_s:.1f} s)")
  tic = time.perf_counter()
  for _ in range(iterations - 1):
    state, _ = learner.iteration(state)
  jax.block_until_ready(state)
  seconds = time.perf_counter() - tic
  log(f"ours: {(iterations - 1) * learner.env_steps_per_iteration / seconds:.0f} env steps/s")
  ret = float(learner.evaluate(state, jax.random.PRNGKey(7), hp["eval_envs"])["eval/episode_return"])
  return {"env_steps_per_s": (iterations - 1) * learner.env_steps_per_iteration / seconds,
          "train_seconds": seconds, "first_iteration_seconds": compile_s,
          "final_eval_return": ret, "env_steps": iterations * learner.env_steps_per_iteration}


def run_brax(brax_env, hp: dict, epochs: int) -> dict:
  brax_adapter.install_device_put_replicated()
  from brax.training.agents.sac import networks as sac_networks  # pylint: disable=import-outside-toplevel
  from brax.training.agents.sac import train as brax_sac  # pylint: disable=import-outside-toplevel
  factory = functools.partial(sac_networks.make_sac_networks, hidden_layer_sizes=hp["hidden"],
                              q_network_layer_norm=True)
  progress = []
  # num_evals = epochs + 1: an evaluation before training and after each training epoch. brax's
  # `training/sps` covers one epoch; like its PPO, brax's pmapped epoch may compile on its first and
  # second call, so the median over epochs 3.. is used.
  if epochs < 3:
    raise ValueError(f"--brax_epochs ({epochs}) must be >= 3")
  brax_sac.train(environment=brax_env, num_timesteps=hp["steps"],
                 episode_length=hp["episode_length"], num_envs=hp["num_envs"],
                 batch_size=hp["batch_size"], grad_updates_per_step=hp["grad_updates"],
                 max_replay_size=hp["replay"], min_replay_size=hp["min_replay"],
                 learning_rate=hp["lr"], discounting=hp["gamma"], tau=hp["tau"],
                 reward_scaling=hp["reward_scaling"], normalize_observations=True,
                 num_evals=epochs + 1, num_eval_envs=hp["eval_envs"], deterministic_eval=True,
                 max_devices_per_host=1, network_factory=factory, seed=0,
                 progress_fn=lambda step, metrics: (progress.append((step, metrics)), log(
                     f"brax: step {step} sps {metrics.get('training/sps', '-')} "
                     f"eval {metrics.get('eval/episode_reward', '-')}")))
  sps = [m["training/sps"] for _, m in progress if "training/sps" in m]
  return {"env_steps_per_s": float(np.median(sps[2:])), "sps_per_epoch": sps,
          "final_eval_return": float(progress[-1][1]["eval/episode_reward"]),
          "env_steps": int(progress[-1][0])}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--envs", default="cartpole")
  parser.add_argument("--num_envs", type=int, default=16)
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--grad_updates", type=int, default=8)
  parser.add_argument("--steps", type=int, default=24_000)
  parser.add_argument("--steps_per_iteration", type=int, default=50)
  parser.add_argument("--replay", type=int, default=65_536)
  parser.add_argument("--min_replay", type=int, default=1024)
  parser.add_argument("--episode_length", type=int, default=200)
  parser.add_argument("--hidden", default="64,64")
  parser.add_argument("--eval_envs", type=int, default=32)
  parser.add_argument("--reset_refresh", default="-1",
                      help="our auto-reset pool's redraw interval (`sac.reset_refresh`; -1: once per "
                           "iteration, before its scan; 1: a batched reset at every step where an env "
                           "finished); a comma list runs ours once per value, the first is compared "
                           "with brax")
  parser.add_argument("--brax_epochs", type=int, default=4,
                      help="brax training epochs the budget is split into (>= 3)")
  args = parser.parse_args()
  hidden = tuple(int(h) for h in args.hidden.split(","))
  results = {"device": str(jax.devices()[0].device_kind), "num_devices": jax.device_count(),
             "jax": jax.__version__, "envs": {}}
  for name in args.envs.split(","):
    ours_env, brax_env = make_env(name, args.episode_length)
    hp = dict(num_envs=args.num_envs, batch_size=args.batch_size, grad_updates=args.grad_updates,
              steps=args.steps, steps_per_iteration=args.steps_per_iteration, replay=args.replay,
              min_replay=args.min_replay, lr=1e-3, gamma=0.99, tau=0.005, reward_scaling=1.0,
              hidden=hidden, episode_length=args.episode_length, eval_envs=args.eval_envs)
    variants = {}
    for refresh in (int(r) for r in args.reset_refresh.split(",")):
      variants[f"ours_reset_refresh_{refresh}"] = run_ours(ours_env, dict(hp, reset_refresh=refresh))
      log(f"ours with reset_refresh={refresh} done")
    ours = next(iter(variants.values()))
    hp["reset_refresh"] = int(args.reset_refresh.split(",")[0])
    print(json.dumps({name: variants}, default=float), flush=True)
    theirs = run_brax(brax_env, hp, args.brax_epochs)
    results["envs"][name] = {
        "hyperparameters": hp, "ours": ours, "brax": theirs, **variants,
        "ratio_steps_per_s_ours_over_brax": ours["env_steps_per_s"] / theirs["env_steps_per_s"],
        "return_ours_minus_brax": ours["final_eval_return"] - theirs["final_eval_return"],
    }
    print(json.dumps({name: results["envs"][name]}, default=float), flush=True)
  print(json.dumps(results, default=float, indent=1))


if __name__ == "__main__":
  main()
