"""brax's PPO vs ours on the same env, hyperparameters and budget, in one process; prints JSON.

For each env (brax's MJX `reacher`, our `quadruped_joystick`):
  * brax PPO (`brax.training.agents.ppo.train`) and ours, same num_envs / unroll / minibatches /
    epochs / lr / entropy / γ / λ / clip / networks / observation normalization / env steps;
  * env steps/s of each (after compilation) and the ratio ours / brax;
  * deterministic evaluation return (and the quadruped's tracking errors) of each at brax's
    evaluation points; brax's policy is evaluated twice there: by brax's own evaluator (its own
    initial states) and by ours on exactly the initial states ours is evaluated on (key 7), so the
    two learners are also compared on the same states;
  * our raw jitted, vmapped env-step throughput at the same batch, and learner / raw.

  python benchmarks/ppo_vs_brax.py                       # CPU-sized default
  python benchmarks/ppo_vs_brax.py --num_envs=8192 --iterations=30 --minibatches=32   # GPU

brax 0.14.2 calls `jax.device_put_replicated`, which current JAX removed; the one-line shim
`vlajax.envs.brax_adapter.install_device_put_replicated()` restores it. brax's pmapped training epoch
compiles on its first *and* second call (measured: epochs 1 and 2 take the same ~20 s on CPU, later
epochs ~40× less), so brax's `training/sps` is taken as the median over epochs 3.. (`num_evals` =
`--brax_epochs` + 1); ours compiles once (asserted in tests) and is timed after its first iteration.
Ours runs with `bootstrap_on_timeout=False`, the same GAE as brax's (a truncated step is masked,
not bootstrapped from the pre-reset observation). `--seeds=N` repeats both learners with N seeds
and reports the means over seeds of the final return and of env steps/s (per-seed values are kept
in the JSON). Auto-reset: brax's training wrapper restarts every env from its one cached first
state; ours from a pool of fresh draws (new key, new DR draw) redrawn once per rollout.
"""
from __future__ import annotations

import argparse
import ast
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.core.config import apply_overrides
from vlajax.envs import brax_adapter, wrappers
from vlajax.rl import evaluation, ppo
from progress_log import log

TRACKING = ("tracking/lin_vel_error", "tracking/ang_vel_error")  # quadruped_joystick's eval metrics


def make_env(name: str, episode_length: int):
  """(our env, the env handed to brax) for `name`."""
  if name == "reacher":
    from brax import envs as brax_envs  # pylint: disable=import-outside-toplevel
    brax_env = brax_envs.get_environment("reacher", backend="mjx")
    return brax_adapter.from_brax(brax_env), brax_env
  ours = envs.make(name, episode_length=episode_length)
  return ours, envs.to_brax(ours)


def raw_throughput(env, num_envs: int, steps: int) -> float:
  """Env steps/s of jitted, vmapped `step` (episode + auto-reset wrappers, the reset pool redrawn
  before every `steps` steps as in the learner's rollouts) with random actions."""
  train_env = wrappers.wrap_for_training(env, episode_length=1000, reset_refresh=steps,
                                         refresh_by_caller=True)
  state = jax.jit(train_env.reset)(jax.random.split(jax.random.PRNGKey(0), num_envs))

  @jax.jit
  def run(state, key):
    def body(s, k):
      a = jax.random.uniform(k, (num_envs, env.action_size), minval=-1, maxval=1)
      return train_env.step(s, a), None
    state = train_env.refresh_pool_if_due(state)
    return jax.lax.scan(body, state, jax.random.split(key, steps))[0]

  jax.block_until_ready(run(state, jax.random.PRNGKey(1)))
  tic = time.perf_counter()
  jax.block_until_ready(run(state, jax.random.PRNGKey(2)))
  return num_envs * steps / (time.perf_counter() - tic)


def make_ours(env, hp: dict, iterations: int, overrides: str = "") -> ppo.Learner:
  """Our learner at `hp`, with `overrides` ("key=value,..." of `vlajax.rl.ppo` config keys)."""
  assignments = dict(item.split("=", 1) for item in filter(None, overrides.split(",")))
  config = apply_overrides(ours_config(hp, iterations),
                           {k: ast.literal_eval(v) for k, v in assignments.items()}, where="ppo")
  return ppo.Learner(env, config, mesh_lib.make_mesh({"data": -1}))


def ours_config(hp: dict, iterations: int):
  """Our PPO config with brax's settings from `hp`."""
  cfg = ppo.default_config()
  cfg.update(dict(num_envs=hp["num_envs"], unroll_length=hp["unroll"],
                  num_minibatches=hp["minibatches"], num_epochs=hp["epochs"],
                  learning_rate=hp["lr"], entropy_coef=hp["entropy"], gamma=hp["gamma"],
                  gae_lambda=0.95, clip_eps=0.3, max_grad_norm=1.0, clip_value_loss=False,
                  policy_hidden=hp["hidden"], value_hidden=hp["hidden"],
                  episode_length=hp["episode_length"], num_iterations=iterations,
                  value_obs_key=hp["value_obs_key"],
                  # brax masks truncated steps instead of bootstrapping from the final observation
                  bootstrap_on_timeout=False))
  return cfg


def run_ours(learner: ppo.Learner, hp: dict, iterations: int, seed: int = 0,
             eval_every: int | None = None) -> dict:
  """Trains `iterations` iterations from `seed` (the learner's jitted functions are reused),
  evaluating deterministically every `eval_every` iterations (brax's marks) and at the end; the
  timed env steps/s covers iterations 2.. without the evaluations."""
  state = learner.init(jax.random.PRNGKey(seed))
  eval_every = eval_every or iterations
  seconds, curve, tracking = 0.0, [], []
  for it in range(1, iterations + 1):
    tic = time.perf_counter()
    state, _ = learner.iteration(state)
    jax.block_until_ready(state)
    if it > 1:  # the first iteration compiles (on the first seed)
      seconds += time.perf_counter() - tic
    if it % eval_every == 0 or it == iterations:
      metrics = learner.evaluate(state, jax.random.PRNGKey(7), hp["eval_envs"])
      ret = float(metrics["eval/episode_return"])
      curve.append((it * learner.env_steps_per_iteration, ret))
      errors = {k: float(metrics[f"eval/{k}"]) for k in TRACKING if f"eval/{k}" in metrics}
      if errors:
        tracking.append((curve[-1][0], errors))
      log(f"ours seed {seed}: {curve[-1][0]} env steps, eval return {ret:.2f} {errors or ''}")
  sps = (iterations - 1) * learner.env_steps_per_iteration / max(seconds, 1e-9)
  log(f"ours seed {seed}: {sps:.0f} env steps/s")
  return {"env_steps_per_s": sps, "train_seconds": seconds, "final_eval_return": curve[-1][1],
          "eval_curve": curve, "eval_tracking_errors": tracking,
          "env_steps": iterations * learner.env_steps_per_iteration}


def make_shared_eval(learner: ppo.Learner, hp: dict, array_obs: bool):
  """`evaluate(make_policy, params) -> metrics`: brax's deterministic policy through our
  evaluator, on the initial states ours is evaluated on (`learner.evaluate`, key 7).
  `array_obs`: brax's policy takes `obs["state"]` (brax's own env) rather than our dict."""
  @functools.partial(jax.jit, static_argnums=0)
  def evaluate(make_policy, params):
    policy = make_policy(params, deterministic=True)

    def act(carry, obs, rng):
      return policy(obs["state"] if array_obs else obs, rng)[0], carry
    return evaluation.evaluate(learner.eval_env, act, jnp.zeros(()), jax.random.PRNGKey(7),
                               hp["eval_envs"], hp["episode_length"])
  return evaluate


def run_brax(brax_env, hp: dict, iterations: int, epochs: int, seed: int = 0,
             shared_eval=None) -> dict:
  """brax's PPO at `hp`; with `shared_eval` (`make_shared_eval`) its policy is also evaluated at
  each of brax's evaluation points on ours' evaluation states (`eval_curve_same_states`)."""
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
  progress, same_states = [], []

  def on_params(step, make_policy, params):
    if shared_eval is None or step == 0:
      return
    metrics = jax.device_get(shared_eval(make_policy, params))
    errors = {k: float(metrics[f"eval/{k}"]) for k in TRACKING if f"eval/{k}" in metrics}
    same_states.append((int(step), float(metrics["eval/episode_return"]), errors))
    log(f"brax seed {seed}: step {step} eval on ours' states {same_states[-1][1]:.2f} {errors or ''}")

  # num_evals = epochs + 1: an evaluation before training and after each training epoch. brax's
  # `training/sps` covers one epoch; epochs 1 and 2 both compile, so the median of 3.. is used.
  if epochs < 3 or iterations % epochs:
    raise ValueError(f"--brax_epochs ({epochs}) must be >= 3 and divide --iterations ({iterations})")
  kwargs = dict(environment=brax_env, num_timesteps=iterations * steps_per_iteration,
                episode_length=hp["episode_length"], num_envs=hp["num_envs"],
                batch_size=batch_size, num_minibatches=hp["minibatches"],
                unroll_length=hp["unroll"], num_updates_per_batch=hp["epochs"],
                learning_rate=hp["lr"], entropy_cost=hp["entropy"], discounting=hp["gamma"],
                gae_lambda=0.95, clipping_epsilon=0.3, max_grad_norm=1.0,
                normalize_observations=True, num_evals=epochs + 1, num_eval_envs=hp["eval_envs"],
                deterministic_eval=True,   # brax's default samples; ours evaluates the mode
                max_devices_per_host=1, network_factory=factory, seed=seed,
                policy_params_fn=on_params,
                progress_fn=lambda step, metrics: (progress.append((step, metrics)), log(
                    f"brax seed {seed}: step {step} sps {metrics.get('training/sps', '-')} "
                    f"eval {metrics.get('eval/episode_reward', '-')}")))
  brax_ppo.train(**kwargs)
  sps = [float(m["training/sps"]) for _, m in progress if "training/sps" in m]
  curve = [(int(step), float(m["eval/episode_reward"])) for step, m in progress if step > 0]
  # brax sums each env metric over an episode: the per-step error is that sum over the mean
  # episode length (length-weighted, where ours averages per-env means; equal without falls).
  tracking = [(int(step), {k: float(m[f"eval/episode_{k}"]) / float(m["eval/avg_episode_length"])
                           for k in TRACKING if f"eval/episode_{k}" in m})
              for step, m in progress if step > 0]
  return {"env_steps_per_s": float(np.median(sps[2:])), "sps_per_epoch": sps, "eval_curve": curve,
          "eval_tracking_errors": [t for t in tracking if t[1]],
          "eval_curve_same_states": same_states,
          "final_eval_return": float(progress[-1][1]["eval/episode_reward"]),
          "env_steps": int(progress[-1][0])}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--envs", default="reacher,quadruped_joystick")
  parser.add_argument("--num_envs", type=int, default=128)
  parser.add_argument("--unroll", type=int, default=20)
  parser.add_argument("--minibatches", type=int, default=4)
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--iterations", type=int, default=8)
  parser.add_argument("--brax_epochs", type=int, default=4,
                      help="brax training epochs the iterations are split into (>= 3)")
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--first_seed", type=int, default=0,
                      help="seeds run are first_seed .. first_seed + seeds - 1 (extends a run)")
  parser.add_argument("--episode_length", type=int, default=1000)
  parser.add_argument("--hidden", default="128,128")
  parser.add_argument("--eval_envs", type=int, default=16)
  parser.add_argument("--ours_overrides", default="",
                      help="'key=value,...' overrides of our PPO config, e.g. 'obs_clip=0'")
  parser.add_argument("--skip_brax", action="store_true",
                      help="ours only (a screen; the comparison needs brax in the same run)")
  args = parser.parse_args()
  hidden = tuple(int(h) for h in args.hidden.split(","))
  seeds = range(args.first_seed, args.first_seed + args.seeds)
  results = {"device": str(jax.devices()[0].device_kind), "num_devices": jax.device_count(),
             "jax": jax.__version__, "envs": {}}
  for name in args.envs.split(","):
    ours_env, brax_env = make_env(name, args.episode_length)
    hp = dict(num_envs=args.num_envs, unroll=args.unroll, minibatches=args.minibatches,
              epochs=args.epochs, lr=3e-4, entropy=1e-2, gamma=0.97, hidden=hidden,
              episode_length=args.episode_length, eval_envs=args.eval_envs,
              value_obs_key="privileged_state" if name != "reacher" else "state")
    learner = make_ours(ours_env, hp, args.iterations, args.ours_overrides)
    ours_runs = [run_ours(learner, hp, args.iterations, seed, args.iterations // args.brax_epochs)
                 for seed in seeds]
    print(json.dumps({name: {"ours": ours_runs, "ours_overrides": args.ours_overrides}},
                     default=float), flush=True)
    if args.skip_brax:
      continue
    shared_eval = make_shared_eval(learner, hp, array_obs=name == "reacher")
    brax_runs = [run_brax(brax_env, hp, args.iterations, args.brax_epochs, seed, shared_eval)
                 for seed in seeds]
    print(json.dumps({name: {"brax": brax_runs}},
                     default=float), flush=True)
    raw = raw_throughput(ours_env, args.num_envs, args.unroll)
    log(f"raw env: {raw:.0f} env steps/s")
    ours, theirs = dict(ours_runs[0]), dict(brax_runs[0])
    for result, runs in ((ours, ours_runs), (theirs, brax_runs)):
      returns = [r["final_eval_return"] for r in runs]
      sps = [r["env_steps_per_s"] for r in runs]
      result.update(final_eval_return=float(np.mean(returns)), final_eval_returns=returns,
                    final_eval_return_std=float(np.std(returns)),
                    env_steps_per_s=float(np.mean(sps)), env_steps_per_s_per_seed=sps)
    marks = {}  # env steps -> mean eval return over seeds, ours and brax's, at brax's eval points
    for label, runs in (("ours", ours_runs), ("brax", brax_runs)):
      for i, (step, _) in enumerate(runs[0]["eval_curve"]):
        marks.setdefault(step, {})[label] = float(np.mean([r["eval_curve"][i][1] for r in runs]))
    tracking_marks = {}  # env steps -> mean lin-vel tracking error over seeds, where reported
    for label, runs in (("ours", ours_runs), ("brax", brax_runs)):
      for i, (step, errors) in enumerate(runs[0]["eval_tracking_errors"]):
        if "tracking/lin_vel_error" in errors:
          tracking_marks.setdefault(step, {})[label] = float(np.mean(
              [r["eval_tracking_errors"][i][1]["tracking/lin_vel_error"] for r in runs]))
    same = {}  # env steps -> brax's mean over seeds on ours' evaluation states (return, lin-vel)
    for i, (step, _, errors) in enumerate(brax_runs[0]["eval_curve_same_states"]):
      same[step] = {"return": float(np.mean([r["eval_curve_same_states"][i][1] for r in brax_runs]))}
      if "tracking/lin_vel_error" in errors:
        same[step]["lin_vel_error"] = float(np.mean(
            [r["eval_curve_same_states"][i][2]["tracking/lin_vel_error"] for r in brax_runs]))
    results["envs"][name] = {
        "eval_return_at_env_steps": marks,
        "brax_on_ours_eval_states": same,
        "eval_lin_vel_error_at_env_steps": tracking_marks,
        "hyperparameters": {k: v for k, v in hp.items()}, "iterations": args.iterations,
        "ours": ours, "brax": theirs, "raw_env_steps_per_s": raw,
        "ratio_steps_per_s_ours_over_brax": ours["env_steps_per_s"] / theirs["env_steps_per_s"],
        "learner_over_raw_env": ours["env_steps_per_s"] / raw,
    }
    print(json.dumps({name: results["envs"][name]}, default=float), flush=True)
  print(json.dumps(results, default=float, indent=1))


if __name__ == "__main__":
  main()
