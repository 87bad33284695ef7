"""TD-MPC vs our SAC vs our PPO at a fixed env-step budget, and MPPI planning latency; prints JSON.

1. `sample_efficiency`: each learner trains on the same env (`--env`: cart-pole balance or
   swing-up, `--episode_env_steps` per episode, default 200) with its `cartpole` config
   (`experiments/configs/{tdmpc,sac,ppo}_*.py`; the learner's episode length follows from its
   action repeat) plus any overrides until `--env_steps` env steps (control steps × action
   repeat); the deterministic
   evaluation return (`--eval_envs` fresh episodes) is recorded at each quarter of the budget, with
   the wall time. The default budget, 6.4k, puts the quarters at the same env steps (1.6k, 3.2k,
   4.8k, 6.4k) for TD-MPC (200 or 400 env steps per iteration) and SAC (800 or 1,600).
2. `planning_latency`: one jitted control step of TD-MPC (encode + MPPI over the latent model,
   vmapped over the batch) with TD-MPC2's planner (6 iterations × 512 samples, 64 elites, 24 prior
   plans, horizon 3) at batch 1 and 256: median and p90 milliseconds after compilation.

  python benchmarks/tdmpc.py                                   # CPU-sized default
  # TD-MPC vs SAC with TD-MPC's action repeat, update ratio (1 per env step) and seed data at
  # brax's target τ 0.005 (SAC's `cartpole` preset uses 0.05):
  python benchmarks/tdmpc.py --learners="tdmpc;sac:tau=0.005" --seeds=5
  python benchmarks/tdmpc.py --env_steps=50000 --latent=512 --mlp=512 --enc=256   # accelerator
  # Swing-up (starts hanging, no termination), 10 s episodes, quarters at 4.8k / 9.6k / 14.4k / 19.2k:
  python benchmarks/tdmpc.py --env=cartpole_swingup --episode_env_steps=500 --env_steps=19200

The default learners: TD-MPC's and SAC's `cartpole` presets, SAC's preset at brax's τ 0.005, SAC
at standard settings (no repeat, 16 updates per batched step of 16 envs = UTD 1, 1,024 seed
transitions, τ 0.005), and PPO's `cartpole` preset.
"""
from __future__ import annotations

import argparse
import ast
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import ppo_locomotion, sac_control, tdmpc_control
from vlajax import envs
from vlajax.rl import mppi, ppo, running_stats, sac, tdmpc
from progress_log import log


def _override(config, assignments: str):
  """Applies "a.b=1,c=2" (values parsed as Python literals) to a ConfigDict; unknown keys raise."""
  for item in filter(None, assignments.split(",")):
    key, value = item.split("=", 1)
    node, parts = config, key.split(".")
    for part in parts[:-1]:
      node = node[part]
    if parts[-1] not in node:
      raise KeyError(f"unknown config key '{key}'")
    node[parts[-1]] = type(node[parts[-1]])(ast.literal_eval(value))
  return config


_LEARNERS = {"tdmpc": (tdmpc_control, "tdmpc", tdmpc.Learner),
             "sac": (sac_control, "sac", sac.Learner),
             "ppo": (ppo_locomotion, "ppo", ppo.Learner)}


def _learner(kind: str, overrides: str = "", env_name: str = "cartpole",
             episode_env_steps: int = 200):
  """`kind` is "tdmpc", "sac" or "ppo": that learner's `cartpole` config plus `overrides`.

  The env is `env_name` (a cart-pole task) with `episode_env_steps` env steps per episode; the
  learner's episode length (control steps) follows from its action repeat.
  """
  if kind not in _LEARNERS:
    raise KeyError(f"unknown learner '{kind}' (have: {', '.join(sorted(_LEARNERS))})")
  configs, field, learner_cls = _LEARNERS[kind]
  config = configs.get_config("cartpole")
  learner_config = _override(config[field], overrides)
  if episode_env_steps % learner_config.action_repeat:
    raise ValueError(f"episode of {episode_env_steps} env steps is not a whole number of "
                     f"control steps at action repeat {learner_config.action_repeat}")
  env_config = envs.default_config(env_name)
  env_config.episode_length = episode_env_steps
  learner_config.episode_length = episode_env_steps // learner_config.action_repeat
  return learner_cls(envs.make(env_name, config=env_config), learner_config)


def sample_efficiency(learner, env_steps: int, eval_envs: int, seed: int) -> dict:
  """Trains `learner` from seed `seed` for `env_steps`, evaluating at each quarter of the budget."""
  per_iteration = learner.env_steps_per_iteration
  iterations = max(int(round(env_steps / per_iteration)), 1)
  marks = sorted({max(int(round(iterations * q)), 1) for q in (0.25, 0.5, 0.75, 1.0)})
  state = learner.init(jax.random.PRNGKey(seed))
  curve, tic, eval_s = [], time.perf_counter(), 0.0
  for it in range(1, iterations + 1):
    state, _ = learner.iteration(state)
    if it in marks:
      jax.block_until_ready(state)
      tic_eval = time.perf_counter()
      train_wall = tic_eval - tic - eval_s        # training only (compilation included)
      metrics = learner.evaluate(state, jax.random.PRNGKey(123), eval_envs)
      curve.append({"env_steps": it * per_iteration,
                    "eval_return": round(float(metrics["eval/episode_return"]), 1),
                    "eval_length": round(float(metrics["eval/episode_length"]), 1),
                    "train_wall_s": round(train_wall, 1)})
      log(f"seed {seed}: {curve[-1]}")
      eval_s += time.perf_counter() - tic_eval
  return {"seed": seed, "curve": curve, "final_eval_return": curve[-1]["eval_return"],
          "env_steps": iterations * per_iteration}


def _utd(learner) -> float | None:
  """Gradient updates per env step (None for PPO, which is on-policy)."""
  cfg = learner.config
  if not hasattr(cfg, "grad_updates_per_step"):
    return None
  return cfg.grad_updates_per_step / (cfg.num_envs * cfg.action_repeat)


def planning_latency(batch_sizes, repeats: int, latent: int, mlp: int, enc: int) -> dict:
  config = tdmpc_control.get_config("cartpole")
  config.tdmpc.update(dict(latent_dim=latent, mlp_dim=mlp, enc_dim=enc, horizon=3))
  config.tdmpc.mppi = mppi.default_config()      # TD-MPC2's planner, unreduced
  env = envs.make(config.env_name, config=config.env)
  learner = tdmpc.Learner(env, config.tdmpc)
  params = learner.model.init(jax.random.PRNGKey(0))
  stats = running_stats.init({"obs": learner.obs_shape})
  out = {"mppi": config.tdmpc.mppi.to_dict(), "latent_dim": latent, "mlp_dim": mlp}
  for batch in batch_sizes:
    obs = jax.random.normal(jax.random.PRNGKey(1), (batch,) + learner.obs_shape)
    mean = jnp.zeros((batch, config.tdmpc.horizon, learner.action_size))
    jax.block_until_ready(learner.act(params, stats, obs, mean, jax.random.PRNGKey(2)))
    times = []
    for i in range(repeats):
      tic = time.perf_counter()
      action, mean = learner.act(params, stats, obs, mean, jax.random.PRNGKey(3 + i))
      jax.block_until_ready(action)
      times.append(1e3 * (time.perf_counter() - tic))
    out[f"batch_{batch}"] = {"median_ms": float(np.median(times)),
                             "p90_ms": float(np.percentile(times, 90)),
                             "ms_per_env": float(np.median(times)) / batch}
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="cartpole", choices=["cartpole", "cartpole_swingup"])
  parser.add_argument("--episode_env_steps", type=int, default=200)
  parser.add_argument("--env_steps", type=int, default=6400)
  parser.add_argument("--learners", default=(
      "tdmpc;sac;sac:tau=0.005;"
      "sac:action_repeat=1,grad_updates_per_step=16,min_replay=1024,tau=0.005;"
      "ppo"),
                      help="';'-separated learners, each kind[:key=value,...] config overrides")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--first_seed", type=int, default=0, help="seeds first_seed .. + seeds - 1")
  parser.add_argument("--eval_envs", type=int, default=32)
  parser.add_argument("--batch_sizes", default="1,256")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--latent", type=int, default=64)
  parser.add_argument("--mlp", type=int, default=64)
  parser.add_argument("--enc", type=int, default=64)
  parser.add_argument("--skip_training", action="store_true")
  args = parser.parse_args()
  results = {"device": str(jax.devices()[0].device_kind), "num_devices": jax.device_count(),
             "jax": jax.__version__, "env": args.env,
             "episode_env_steps": args.episode_env_steps,
             "env_step_budget": args.env_steps}
  if not args.skip_training:
    results["sample_efficiency"] = {}
    for entry in args.learners.split(";"):
      kind, _, overrides = entry.partition(":")
      learner = _learner(kind, overrides, args.env, args.episode_env_steps)
      runs = [sample_efficiency(learner, args.env_steps, args.eval_envs, seed)
              for seed in range(args.first_seed, args.first_seed + args.seeds)]
      finals = [r["final_eval_return"] for r in runs]
      summary = {"runs": runs, "final_mean": round(float(np.mean(finals)), 1),
                 "final_min": min(finals), "final_max": max(finals),
                 "utd": _utd(learner), "train_wall_s_mean": round(float(np.mean(
                     [r["curve"][-1]["train_wall_s"] for r in runs])), 1)}
      results["sample_efficiency"][entry] = summary
      log(f"{entry}: final mean {summary['final_mean']}")
      print(json.dumps({entry: summary}), flush=True)
  results["planning_latency"] = planning_latency(
      [int(b) for b in args.batch_sizes.split(",")], args.repeats, args.latent, args.mlp, args.enc)
  print(json.dumps(results, indent=1))


if __name__ == "__main__":
  main()
