"""Where a PPO iteration's time goes: rollout alone vs the whole iteration vs raw env steps; JSON out.

Also the iteration with 1 epoch x 1 minibatch (the SGD's share) and with the advantages computed
once per iteration instead of in every minibatch (`recompute_advantages=False`: GAE's share), and
alone: one epoch's shuffle of the rollout data into minibatches, GAE (with its value pass) over the
whole batch, and the host transfer of one iteration's metrics (the loop's only per-iteration
device-to-host copy). The learner is configured as in `ppo_vs_brax.py` (brax's settings).
`--env=reacher` is brax's MJX reacher (as in `ppo_vs_brax.py`).

  python benchmarks/ppo_breakdown.py --env=quadruped_joystick --num_envs=8192 --minibatches=32
  python benchmarks/ppo_breakdown.py --env=reacher --num_envs=4096 --minibatches=32 --hidden=256,256
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp

from ppo_vs_brax import make_env, ours_config
from vlajax.core import mesh as mesh_lib
from vlajax.rl import ppo


def timed(fn, *args, repeats=3):
  out = fn(*args)
  jax.block_until_ready(out)
  best = float("inf")
  for _ in range(repeats):
    tic = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - tic)
  return best


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--env", default="cartpole")
  parser.add_argument("--num_envs", type=int, default=256)
  parser.add_argument("--unroll", type=int, default=20)
  parser.add_argument("--minibatches", type=int, default=8)
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--hidden", default="512,256,128")
  args = parser.parse_args()
  env, _ = make_env(args.env, 1000)
  hidden = tuple(int(h) for h in args.hidden.split(","))
  cfg = ours_config(dict(num_envs=args.num_envs, unroll=args.unroll, minibatches=args.minibatches,
                         epochs=args.epochs, lr=3e-4, entropy=1e-2, gamma=0.97, hidden=hidden,
                         episode_length=1000,
                         value_obs_key=("privileged_state" if "privileged_state"
                                        in env.observation_size else "state")), 10)
  out = {"env": args.env, "device": jax.devices()[0].device_kind, "num_envs": args.num_envs}
  learner = ppo.Learner(env, cfg, mesh_lib.make_mesh({"data": -1}))
  state = learner.init(jax.random.PRNGKey(0))
  rollout = jax.jit(lambda s, k: learner._rollout(s, k))  # pylint: disable=protected-access
  out["rollout_s"] = timed(rollout, state, jax.random.PRNGKey(1))
  iteration = jax.jit(learner._iteration)  # pylint: disable=protected-access
  out["iteration_s"] = timed(iteration, state)
  _, metrics = iteration(state)
  jax.block_until_ready(metrics)
  tic = time.perf_counter()
  jax.device_get(metrics)
  out["metrics_transfer_s"] = time.perf_counter() - tic

  _, traj = rollout(state, jax.random.PRNGKey(1))
  seq = {"obs": traj.obs, "reward": traj.reward, "done": traj.done, "truncation": traj.truncation,
         "last_obs": jax.tree.map(lambda x: x[-1:], traj.obs)}
  data = {**seq, "raw_action": traj.raw_action, "log_prob": traj.log_prob}

  @jax.jit
  def shuffle(data, key):
    """One epoch's permutation of the env axis, split into [num_minibatches, T, b, ...]."""
    perm = jax.random.permutation(key, args.num_envs)
    def split(x):
      x = jnp.take(x, perm, axis=1)
      return jnp.moveaxis(jnp.reshape(x, (x.shape[0], args.minibatches, -1) + x.shape[2:]), 1, 0)
    return jax.tree.map(split, data)
  out["shuffle_s_per_epoch"] = timed(shuffle, data, jax.random.PRNGKey(2))
  advantages = jax.jit(learner._advantages)  # pylint: disable=protected-access
  out["gae_s_whole_batch"] = timed(advantages, state.params, state.obs_stats, seq)
  variants = {"iteration_s_epochs1_minibatches1": dict(num_epochs=1, num_minibatches=1),
              "iteration_s_advantages_once": dict(recompute_advantages=False)}
  for name, overrides in variants.items():
    c = cfg.copy_and_resolve_references()
    c.update(overrides)
    l2 = ppo.Learner(env, c, mesh_lib.make_mesh({"data": -1}))
    s2 = l2.init(jax.random.PRNGKey(0))
    out[name] = timed(jax.jit(l2._iteration), s2)  # pylint: disable=protected-access
  steps = args.num_envs * args.unroll
  out["rollout_env_steps_per_s"] = steps / out["rollout_s"]
  out["iteration_env_steps_per_s"] = steps / out["iteration_s"]
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
