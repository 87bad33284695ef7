"""Policies for closed-loop evaluation, one loader convention for every kind.

`load(kind, env, path=..., ...)` returns an `EvalPolicy`: `act(carry, obs, rng) -> (action f32[B, A],
carry)` (the `vlajax.envs.rollout` protocol), `init_carry(num_envs)`, the `observe` it needs (the
observation dict, or the whole env state for scripted experts) and `info` (the loader's info plus
`kind`). Kinds:

  ppo, sac  the run directory's deterministic policy (`rl.ppo.load_policy`, `rl.sac.load_policy`).
  tdmpc     MPPI over the learned model, warm-started from the previous control step's plan, which
            the carry holds per env (`plan=False`: the prior's mode, no carry).
  scripted  the env's scripted expert (`envs.manipulation.experts`), reading the privileged state.
  random    uniform actions in [-1, 1] (a floor for success rates).

Every kind is checked against the env: a policy whose action size is not the env's, or whose
observation key the env does not have, is a ValueError naming both.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from vlajax.envs import rollout as rollout_lib

KINDS = ("ppo", "sac", "tdmpc", "scripted", "random")


@dataclasses.dataclass(frozen=True)
class EvalPolicy:
  """A policy ready for `vlajax.envs.rollout.rollout`."""
  act: rollout_lib.Act
  init_carry: Callable[[int], Any]
  observe: Callable
  info: dict
  cameras: tuple[str, ...] = ()   # cameras whose images the policy reads (`obs["images"]`)
  image_size: int = 64            # their height and width


def _no_carry(num_envs: int):
  del num_envs
  return jnp.zeros(())


def _check_fits(env, info: dict, kind: str, path) -> None:
  where = f"{kind} policy at {path}" if path else f"{kind} policy"
  if int(info["action_size"]) != int(env.action_size):
    raise ValueError(f"the {where} has action size {info['action_size']}; the env "
                     f"{type(env).__name__} takes {env.action_size}")
  key = info.get("obs_key")
  if key is not None:
    sizes = env.observation_size
    if key not in sizes:
      raise ValueError(f"the {where} reads observation '{key}'; the env gives {sorted(sizes)}")
    if tuple(sizes[key]) != tuple(info["observation_size"][key]):
      raise ValueError(f"the {where} reads '{key}' of shape {tuple(info['observation_size'][key])};"
                       f" the env's is {tuple(sizes[key])}")


def _from_run(kind: str, path, step):
  if not path:
    raise ValueError(f"policy kind '{kind}' needs policy.path (a run directory)")
  if kind == "ppo":
    from vlajax.rl import ppo  # pylint: disable=import-outside-toplevel
    return ppo.load_policy(path, step)
  from vlajax.rl import sac  # pylint: disable=import-outside-toplevel
  return sac.load_policy(path, step)


def _tdmpc(env, path, step, plan: bool, seed: int) -> EvalPolicy:
  if not path:
    raise ValueError("policy kind 'tdmpc' needs policy.path (a run directory)")
  from vlajax.rl import tdmpc  # pylint: disable=import-outside-toplevel
  policy, info = tdmpc.load_policy(path, step, plan=plan, seed=seed)
  horizon = int(info["config"]["tdmpc"]["horizon"])
  key = info["obs_key"]

  def act(plan_mean, obs, rng):
    x = obs[key]
    if not plan:
      return policy._prior(x), plan_mean  # pylint: disable=protected-access
    return policy.step(x, plan_mean, rng)

  init = lambda n: jnp.zeros((n, horizon, int(info["action_size"])))
  return EvalPolicy(act, init if plan else _no_carry, lambda state: state.obs, info)


def load(kind: str, env, path: str | None = None, step: int | None = None, *, plan: bool = True,
         seed: int = 0) -> EvalPolicy:
  """The `kind` policy (see the module doc) for the unbatched `env`, checked against it."""
  if kind not in KINDS:
    raise ValueError(f"policy kind '{kind}' unknown (use one of {KINDS})")
  if kind in ("ppo", "sac"):
    policy, info = _from_run(kind, path, step)
    result = EvalPolicy(rollout_lib.stateless(policy), _no_carry, lambda state: state.obs, info)
  elif kind == "tdmpc":
    result = _tdmpc(env, path, step, plan, seed)
  elif kind == "scripted":
    from vlajax.envs.manipulation import experts  # pylint: disable=import-outside-toplevel
    expert = jax.vmap(experts.make_expert(env))
    info = {"action_size": env.action_size, "obs_key": None}
    result = EvalPolicy(lambda carry, state, rng: (expert(state), carry), _no_carry,
                        rollout_lib.full_state, info)
  else:   # random
    size = env.action_size

    def act(carry, obs, rng):
      batch = jax.tree.leaves(obs)[0].shape[0]
      return jax.random.uniform(rng, (batch, size), minval=-1.0, maxval=1.0), carry
    result = EvalPolicy(act, _no_carry, lambda state: state.obs,
                        {"action_size": size, "obs_key": None})
  _check_fits(env, result.info, kind, path)
  return dataclasses.replace(result, info=dict(result.info, kind=kind))
