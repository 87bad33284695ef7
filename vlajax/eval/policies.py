"""Policies for closed-loop evaluation, one loader convention for every kind.

Every policy loader of the project returns `(policy, info)` (`rl.ppo/sac/tdmpc.load_policy`,
`imitation.policy.load_policy`, `vla.load_policy` / `load_batched_policy`,
`envs.manipulation.experts.load_policy`, `served_policy` here for a policy behind the bridge), and
`info` has these keys (`INFO_KEYS`; `load` fills the ones a loader cannot know from the env):

  action_size       int: the size A of one action (the env's action size).
  action_horizon    int: the chunk length H, actions predicted per decision (1: one action).
  control_hz        float: decisions per second the policy was trained for (the env's control
                    rate; an RL run with action repeat r: that over r).
  obs_key           str | None: the observation entry the policy reads; None when it reads several
                    (cameras and state) or the whole privileged state, which its kind checks itself.
  observation_size  dict: name -> shape of the observations it was built for.

Loaders may add their own keys (`config`, `step`, `action_repeat`, `cameras`, `image_size`, ...;
the VLA's also `action_dim` = action_size and `chunk_length` = action_horizon, its wire names).

`load(kind, env, path=..., ...)` returns an `EvalPolicy`: `act(carry, obs, rng) -> (action f32[B, A],
carry)` (the `vlajax.envs.rollout` protocol), `init_carry(num_envs)`, the `observe` it needs (the
observation dict, or the whole env state for scripted experts) and `info` (the loader's info plus
`kind`). Kinds (`KINDS`):

  ppo, sac  the run directory's deterministic policy (`rl.ppo.load_policy`, `rl.sac.load_policy`);
            a run trained with action repeat r decides every r env steps and holds its action.
  tdmpc     MPPI over the learned model, warm-started from the previous control step's plan, which
            the carry holds per env (`plan=False`: the prior's mode, no carry); action repeat as ppo.
  scripted  the env's scripted expert (`envs.manipulation.experts.load_policy`), reading the
            privileged state.
  random    uniform actions in [-1, 1] (a floor for success rates).
  chunk     a `train_policy` run (an action head: `imitation.policy.load_policy`): its cameras
            rendered at its image size, `obs["state"][:proprio_dim]` as the proprioception, the
            last `window` observations (the first one repeated at the episode start, as the
            data pipeline pads), the first `execute` actions of each chunk (default: the run's),
            or with `ensemble` > 0 ACT's temporal ensembling (a chunk every step, weights
            exp(-ensemble * i), `policies.chunking.temporal_ensemble`).
  vla       a `train_vla` run (`vla.load_batched_policy`): the model's cameras rendered at its image
            size (the host loop, `rollout_on_host`), `obs["state"]` as its state, the episode's
            instruction (language envs; else `prompt`) tokenized once per instruction table;
            executes the first `execute` actions of each chunk (default all) and replans, as
            `policies.chunking.replan_every_k`.
  remote    a policy served at `path` = host:port (`experiments.serve_policy`): not a jitted
            rollout but the deployment path, `eval.served.evaluate_served` on the arm task's
            native-MuJoCo twin (the eval job's `policy.kind=remote`); `served_policy(client)` is
            its `(planner, info)`. `load` refuses it with an error that says so.

Chunks run through `policies.chunking` (`policies.execution`'s maths, the bridge executor's).
Every kind is checked against the env: a policy whose action size is not the env's, or whose
observation key the env does not have, is a ValueError naming both.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from vlajax.envs import rollout as rollout_lib

KINDS = ("ppo", "sac", "tdmpc", "scripted", "random", "vla", "chunk", "remote")
INFO_KEYS = ("action_size", "action_horizon", "control_hz", "obs_key", "observation_size")


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


def _vla(env, path, step, execute: int | None, prompt: str) -> EvalPolicy:
  if not path:
    raise ValueError("policy kind 'vla' needs policy.path (a train_vla run directory)")
  from vlajax.envs import render  # pylint: disable=import-outside-toplevel
  from vlajax.envs.manipulation import instructions  # pylint: disable=import-outside-toplevel
  from vlajax.policies import chunking  # pylint: disable=import-outside-toplevel
  from vlajax.vla import policy as vla_policy  # pylint: disable=import-outside-toplevel
  language = "instruction" in jax.eval_shape(env.reset, jax.random.PRNGKey(0)).info
  texts = [ins.text for ins in instructions.INSTRUCTIONS] if language else [prompt]
  chunk_fn, info = vla_policy.load_batched_policy(path, step, prompts=texts)
  missing = [c for c in info["cameras"] if c not in render.camera_names(env.mj_model)]
  if missing:
    raise ValueError(f"the vla policy at {path} reads cameras {missing}; the env "
                     f"{type(env).__name__} has {list(render.camera_names(env.mj_model))}")
  state_size = tuple(env.observation_size.get("state", ()))
  if state_size != (info["state_dim"],):
    raise ValueError(f"the vla policy at {path} takes state of shape ({info['state_dim']},); the "
                     f"env {type(env).__name__}'s obs['state'] is {state_size}")
  tokens, token_mask = (jnp.asarray(x) for x in info["prompt_tokens"])

  def chunks(state, rng):
    index = state.info["instruction"] if language else jnp.zeros_like(state.reward, jnp.int32)
    return chunk_fn({"images": state.obs["images"], "state": state.obs["state"],
                     "tokens": tokens[index], "token_mask": token_mask[index]}, rng)
  horizon = int(info["action_horizon"])
  act, init = chunking.replan_every_k(chunks, horizon, execute or horizon)
  info = {k: v for k, v in info.items() if k != "prompt_tokens"}
  info.update(obs_key=None, execute=execute or horizon)
  return EvalPolicy(act, lambda n: init(n, int(info["action_size"])), rollout_lib.full_state, info,
                    cameras=tuple(info["cameras"]), image_size=int(info["image_size"]))


def _chunk(env, path, step, execute: int | None, ensemble: float = 0.0) -> EvalPolicy:
  if not path:
    raise ValueError("policy kind 'chunk' needs policy.path (a train_policy run directory)")
  from vlajax.envs import render  # pylint: disable=import-outside-toplevel
  from vlajax.imitation import policy as imitation_policy  # pylint: disable=import-outside-toplevel
  from vlajax.policies import chunking  # pylint: disable=import-outside-toplevel
  chunk_fn, info = imitation_policy.load_policy(path, step)
  missing = [c for c in info["cameras"] if c not in render.camera_names(env.mj_model)]
  if missing:
    raise ValueError(f"the chunk policy at {path} reads cameras {missing}; the env "
                     f"{type(env).__name__} has {list(render.camera_names(env.mj_model))}")
  window, proprio_dim = int(info["window"]), int(info["proprio_dim"])

  def current(state):
    obs = {f"image_{c}": state.obs["images"][c] for c in info["cameras"]}
    if proprio_dim:
      obs["proprio"] = state.obs["state"][:, :proprio_dim]
    return obs

  def chunks(observed, rng):
    return chunk_fn(observed, rng)
  horizon = int(info["action_horizon"])
  execute = execute or int(info["execute"])
  if ensemble > 0:   # ACT: a new chunk every step, overlapping predictions averaged
    inner_act, inner_init = chunking.temporal_ensemble(chunks, horizon, alpha=ensemble)
    execute = 1
  else:
    inner_act, inner_init = chunking.replan_every_k(chunks, horizon, execute)

  def act(carry, state, rng):
    inner, history, started = carry
    now = current(state)
    if window == 1:
      action, inner = inner_act(inner, now, rng)
      return action, (inner, history, started)
    # history: [B, window - 1, ...] per key, the previous observations (the first one repeated).
    history = jax.tree.map(lambda h, x: jnp.where(started, h, jnp.repeat(
        x[:, None], window - 1, axis=1).astype(h.dtype)), history, now)
    stacked = jax.tree.map(lambda h, x: jnp.concatenate([h, x[:, None].astype(h.dtype)], 1),
                           history, now)
    action, inner = inner_act(inner, stacked, rng)
    return action, (inner, jax.tree.map(lambda s: s[:, 1:], stacked), jnp.ones((), bool))

  size = int(info["image_size"])

  def init_carry(num_envs: int):
    history = {f"image_{c}": jnp.zeros((num_envs, max(window - 1, 0), size, size, 3), jnp.uint8)
               for c in info["cameras"]}
    if proprio_dim:
      history["proprio"] = jnp.zeros((num_envs, max(window - 1, 0), proprio_dim), jnp.float32)
    return inner_init(num_envs, int(info["action_size"])), history, jnp.zeros((), bool)

  info = dict(info, execute=execute, ensemble=ensemble)
  return EvalPolicy(act, init_carry, rollout_lib.full_state, info, cameras=tuple(info["cameras"]),
                    image_size=size)


def load(kind: str, env, path: str | None = None, step: int | None = None, *, plan: bool = True,
         seed: int = 0, execute: int | None = None, prompt: str = "",
         ensemble: float = 0.0) -> EvalPolicy:
  """The `kind` policy (see the module doc) for the unbatched `env`, checked against it.
  `plan`, `seed`: tdmpc's; `execute`, `prompt`: vla's."""
  if kind not in KINDS:
    raise ValueError(f"policy kind '{kind}' unknown (use one of {KINDS})")
  if kind == "remote":
    raise ValueError("policy kind 'remote' is evaluated through the bridge, not loaded in process: "
                     "eval.served.evaluate_served with eval.policies.served_policy(client), or the "
                     "eval job with policy.kind=remote and policy.path=host:port")
  if kind in ("ppo", "sac"):
    policy, info = _from_run(kind, path, step)
    result = EvalPolicy(rollout_lib.stateless(policy), _no_carry, lambda state: state.obs, info)
  elif kind == "tdmpc":
    result = _tdmpc(env, path, step, plan, seed)
  elif kind == "vla":
    result = _vla(env, path, step, execute, prompt)
  elif kind == "chunk":
    result = _chunk(env, path, step, execute, ensemble)
  elif kind == "scripted":
    from vlajax.envs.manipulation import experts  # pylint: disable=import-outside-toplevel
    expert, info = experts.load_policy(env)
    expert = jax.vmap(expert)
    result = EvalPolicy(lambda carry, state, rng: (expert(state), carry), _no_carry,
                        rollout_lib.full_state, info)
  else:   # random
    size = env.action_size

    def act(carry, obs, rng):
      batch = jax.tree.leaves(obs)[0].shape[0]
      return jax.random.uniform(rng, (batch, size), minval=-1.0, maxval=1.0), carry
    result = EvalPolicy(act, _no_carry, lambda state: state.obs,
                        {"action_size": size, "action_horizon": 1, "obs_key": None})
  _check_fits(env, result.info, kind, path)
  if int(result.info.get("action_repeat", 1)) > 1:
    result = _held(result, int(result.info["action_repeat"]))
  # The keys every loader shares: a loader that cannot know them runs at the env's rate on its
  # observations (demos and VLA runs are recorded in the env they are evaluated in).
  info = dict(result.info, kind=kind)
  info.setdefault("control_hz", 1.0 / float(env.dt))
  info.setdefault("observation_size", dict(env.observation_size))
  return dataclasses.replace(result, info=info)


def _held(policy: EvalPolicy, repeat: int) -> EvalPolicy:
  """`policy` deciding every `repeat` env steps and holding its action in between (an RL run
  trained with action repeat: it saw every `repeat`-th observation)."""
  size = int(policy.info["action_size"])

  def act(carry, obs, rng):
    inner, held, index = carry
    action, inner = jax.lax.cond(index % repeat == 0, lambda: policy.act(inner, obs, rng),
                                 lambda: (held, inner))
    return action, (inner, action, index + 1)

  def init_carry(num_envs: int):
    return (policy.init_carry(num_envs), jnp.zeros((num_envs, size), jnp.float32),
            jnp.zeros((), jnp.int32))
  return dataclasses.replace(policy, act=act, init_carry=init_carry)


def served_policy(client) -> tuple[Callable, dict]:
  """A policy served over the bridge (kind `remote`) as a loader's `(planner, info)`: `planner`
  (observation dict -> chunk f32[H, A], `bridge.executor.planner_from_client`) and `info` with
  `INFO_KEYS` from the server's metadata (plus `observation_spec` in wire form, `model_id`,
  `env_name`). `client`: a connected `bridge.client.PolicyClient`."""
  from vlajax.bridge.executor import planner_from_client  # pylint: disable=import-outside-toplevel
  meta = client.metadata
  shape = meta.get("action_spec", {}).get("actions", {}).get("shape", [0, 0])
  spec = meta.get("observation_spec", {})
  info = {"action_size": int(shape[-1]), "action_horizon": int(meta.get("chunk_length", 1)),
          "control_hz": float(meta.get("control_hz", 0.0)), "obs_key": None,
          "observation_size": {k: tuple(v["shape"]) for k, v in spec.items()
                               if isinstance(v, dict) and "shape" in v},
          "observation_spec": spec, "model_id": meta.get("model_id"),
          "env_name": str(meta.get("env_name", ""))}
  return planner_from_client(client), info
