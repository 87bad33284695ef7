"""The sim demo engine: demonstrations from the manipulation tasks, written as an RLDS dataset.

It joins `envs` (tasks, experts' rollouts, rendering) and `data` (the RLDS writer and registry),
so it sits above both, in `imitation/` (DESIGN.md's layering: siblings do not import each other).

  demonstrator = ...                # act(carry, observed, rng), init_carry(B), observe(state)
  episodes = collect.episodes(env, demonstrator, CollectConfig(num_episodes=100, seed=0))
  summary = collect.write(episodes, data_dir, "sim_arm_pick_cube", env)  # then read as OXE data

Each batch of `batch_size` episodes runs as one jitted program (physics and demonstrator, a scan
over control steps, no rendering); the cameras are rendered afterwards on the host, only for the
episodes kept and only up to their end, from the recorded physics (`qpos`, `mocap_pos`,
`mocap_quat`), as `eval` renders a policy's cameras: the nominal model's look, or with
`visual_randomization` one visual DR draw per episode (`env.visual_overrides`). Episodes end
`steps_after_success` control steps after the first successful one (so a policy also learns to
hold still), at a terminal state, or at `episode_length`; successful ones are kept, failures only
with `keep_failures` (flagged in the episode metadata).

Initial states come from `episode_keys(seed, n)`, a stream folded away from the evaluation sets
(`vlajax.eval.closed_loop.initial_keys(seed, n)` splits `PRNGKey(seed)` itself), so demos never
start from an evaluation state of any seed's set by construction of the keys.

Noise injection (`action_noise` > 0): the env executes the demonstrator's action plus Gaussian
noise (std `action_noise`, all entries but the gripper command, clipped to [-1, 1]); the recorded
label is the clean action, so the data shows recoveries from states the clean expert never visits.

One episode, RLDS steps (T steps; step t's observation is the state the action was taken in):
  observation/image_<camera>  uint8[T, H, W, 3]   each of `cameras`
  observation/state           f32[T, S]           the env's obs["state"] (as state policies see it)
  observation/proprio         f32[T, 18]          obs["state"][:18]: joint angles (noisy under DR),
                                                   joint velocities, gripper opening, tool point
  action                      f32[T, A]           the clean label in the env's action space
                                                   (`ee_delta`: tool-point delta, rotation, gripper)
  executed_action             f32[T, A]           what the env executed (label + noise)
  joint_position_action       f32[T, 8]           the same step in joint form: the 7 arm joint
                                                   position targets it commanded (rad), gripper
  reward f32[T], is_first / is_last / is_terminal bool[T] (terminal: the last step of a success)
  language_instruction        the episode's instruction (language tasks) or the task's `PROMPT`
Episode metadata: `seed`, `episode_index` (into the seed's key stream), `reset_key` u32[2],
`success`, `success_step` (-1 if none), `length`, `instruction_id` (-1 without), and every DR
draw as `dr_<field>`.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import queue
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vlajax.core import atomic
from vlajax.envs import render as render_lib
from vlajax.envs import rollout as rollout_lib

DEMO_STREAM = 0x64656d6f   # folded into PRNGKey(seed) for the demos' reset keys ("demo")
INFO_FILE = "demo_info.json"


@dataclasses.dataclass(frozen=True)
class CollectConfig:
  """What `episodes` collects (fields documented in the module docstring)."""
  num_episodes: int = 50                  # episodes kept (successes, plus failures if kept)
  seed: int = 0
  max_attempts: int | None = None         # episodes run at most (default 4 x num_episodes)
  batch_size: int = 16
  episode_length: int | None = None       # default: the env's
  steps_after_success: int = 10
  keep_failures: bool = False
  action_noise: float = 0.0
  cameras: tuple[str, ...] = ("primary", "wrist")
  image_size: int = 64
  visual_randomization: bool = False
  demonstrator_seed: int = 0

  def __post_init__(self):
    for name in ("num_episodes", "batch_size", "image_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"collect config: {name} must be >= 1, got {getattr(self, name)}")
    if self.steps_after_success < 0 or self.action_noise < 0:
      raise ValueError("collect config: steps_after_success and action_noise must be >= 0, got "
                       f"{self.steps_after_success} and {self.action_noise}")


def episode_keys(seed: int, num_episodes: int) -> jax.Array:
  """u32[num_episodes, 2]: the demos' reset keys (disjoint from the evaluation sets' stream)."""
  return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), DEMO_STREAM), num_episodes)


def instruction_of(env, instruction_id: int) -> str:
  """The words of an episode: its instruction (language tasks) or the task's `PROMPT`."""
  if instruction_id >= 0:
    from vlajax.envs.manipulation import instructions  # pylint: disable=import-outside-toplevel
    return instructions.text(instruction_id)
  return getattr(env.unwrapped, "PROMPT", "")


_PROGRAMS: dict = {}


def _physics_program(env, demonstrator, length: int, batch: int) -> Callable:
  """The jitted `(keys u32[B, 2], rng, noise_std) -> (first State, trace [T, B, ...])` of one
  batch, kept per (env, demonstrator, length, batch) so a second collection does not recompile."""
  key = (id(env), id(demonstrator), length, batch)
  if key not in _PROGRAMS:  # the env and demonstrator are kept too, so their ids stay unique
    _PROGRAMS[key] = (_build_program(env, demonstrator, length, batch), env, demonstrator)
  return _PROGRAMS[key][0]


def _build_program(env, demonstrator, length: int, batch: int) -> Callable:
  batched = rollout_lib.make_batched_env(env, length)
  not_gripper = jnp.ones(int(env.action_size)).at[-1].set(0.0)   # no noise on the gripper
  proprio = int(env.unwrapped.PROPRIOCEPTION_SIZE)

  def run(keys, rng, noise_std):
    noise_scale = noise_std * not_gripper
    first = batched.reset(keys)

    def step(loop, key):
      state, carry = loop
      k_act, k_noise = jax.random.split(key)
      clean, carry = demonstrator.act(carry, demonstrator.observe(state), k_act)
      clean = jnp.clip(clean, -1.0, 1.0)
      executed = jnp.clip(clean + noise_scale * jax.random.normal(k_noise, clean.shape), -1, 1)
      after = batched.step(state, executed)
      record = {
          "qpos": state.data.qpos, "mocap_pos": state.data.mocap_pos,
          "mocap_quat": state.data.mocap_quat,
          "state": state.obs["state"], "proprio": state.obs["state"][:, :proprio],
          "action": clean, "executed_action": executed,
          "joint_position_action": jnp.concatenate([after.info["ctrl"][:, :7], clean[:, -1:]], 1),
          "reward": after.reward, "done": after.done,
          "success": after.metrics["success"],
      }
      return (after, carry), record

    _, trace = jax.lax.scan(step, (first, demonstrator.init_carry(batch)),
                            jax.random.split(rng, length))
    return first, trace

  return jax.jit(run)


def _episode_end(success: np.ndarray, done: np.ndarray, steps_after: int) -> tuple[int, int]:
  """(number of steps kept, first successful step or -1) from one episode's per-step flags [T]."""
  length = success.shape[0]
  hits = np.flatnonzero(success > 0)
  first_success = int(hits[0]) if hits.size else -1
  ends = np.flatnonzero(done > 0)
  end = int(ends[0]) + 1 if ends.size else length
  if first_success >= 0:
    end = min(end, first_success + 1 + steps_after)
  return end, first_success


def episodes(env, demonstrator, config: CollectConfig,
             progress: Callable[[dict], None] | None = None) -> Iterator[dict]:
  """Yields kept episodes (module docstring format, numpy) until `num_episodes` are kept.

  `demonstrator` has `act(carry, observed, rng) -> (action f32[B, A], carry)`, `init_carry(B)` and
  `observe(state)` (an `eval.policies.EvalPolicy`: the scripted expert, a trained state policy).
  `progress(counts)` gets {"attempted", "kept", "successes", "frames", "elapsed_s"} per batch.
  Raises RuntimeError when `max_attempts` episodes did not give `num_episodes`.
  """
  if "success" not in jax.eval_shape(env.reset, jax.random.PRNGKey(0)).metrics:
    raise ValueError(f"env {type(env.unwrapped).__name__} reports no metrics['success']: the demo "
                     "engine keeps episodes by their success")
  length = int(config.episode_length or env.config.episode_length)
  max_attempts = config.max_attempts or 4 * config.num_episodes
  keys = episode_keys(config.seed, max_attempts + config.batch_size)
  program = _physics_program(env, demonstrator, length, config.batch_size)
  renderer = render_lib.BatchRenderer(env.mj_model, cameras=config.cameras,
                                      size=config.image_size)
  counts = {"attempted": 0, "kept": 0, "successes": 0, "frames": 0}
  tic = time.perf_counter()
  try:
    for batch_index, start in enumerate(range(0, max_attempts, config.batch_size)):
      batch_keys = keys[start:start + config.batch_size]
      rng = jax.random.fold_in(jax.random.PRNGKey(config.demonstrator_seed), batch_index)
      first, trace = jax.device_get(program(batch_keys, rng, jnp.float32(config.action_noise)))
      overrides = (jax.device_get(env.visual_overrides(batch_keys))
                   if config.visual_randomization else None)
      for b in range(config.batch_size):
        if counts["kept"] >= config.num_episodes or counts["attempted"] >= max_attempts:
          break
        counts["attempted"] += 1
        end, first_success = _episode_end(trace["success"][:, b], trace["done"][:, b],
                                          config.steps_after_success)
        counts["successes"] += first_success >= 0
        if first_success < 0 and not config.keep_failures:
          continue
        episode = _episode(env, renderer, config, first, trace, overrides, b, end, first_success,
                           start + b, np.asarray(batch_keys[b]))
        counts["kept"] += 1
        counts["frames"] += end
        yield episode
      if progress is not None:
        progress({**counts, "elapsed_s": time.perf_counter() - tic})
      if counts["kept"] >= config.num_episodes:
        return
    raise RuntimeError(f"demo collection kept {counts['kept']} of the {config.num_episodes} "
                       f"episodes asked for after {counts['attempted']} attempts "
                       f"({counts['successes']} successes): raise max_attempts, or check the "
                       "demonstrator on this env")
  finally:
    renderer.close()


def _episode(env, renderer, config: CollectConfig, first, trace: dict, overrides, b: int,
             end: int, first_success: int, index: int, reset_key: np.ndarray) -> dict:
  """Episode `b` of a batch's trace, its first `end` steps, with its camera images rendered."""
  pick = lambda x: np.asarray(x[:end, b])
  physics = type("Physics", (), {})()
  physics.qpos, physics.mocap_pos, physics.mocap_quat = (
      pick(trace[k]) for k in ("qpos", "mocap_pos", "mocap_quat"))
  episode_overrides = None
  if overrides is not None:
    episode_overrides = {k: np.repeat(np.asarray(v)[b][None], end, axis=0)
                         for k, v in overrides.items()}
  images = renderer.render(physics, overrides=episode_overrides)
  instruction_id = int(np.asarray(first.info["instruction"])[b]) if "instruction" in first.info \
      else -1
  success = first_success >= 0
  terminal = np.zeros(end, bool)
  terminal[-1] = success
  steps = {
      "observation": {**{f"image_{c}": images[c] for c in config.cameras},
                      "state": pick(trace["state"]), "proprio": pick(trace["proprio"])},
      "action": pick(trace["action"]), "executed_action": pick(trace["executed_action"]),
      "joint_position_action": pick(trace["joint_position_action"]),
      "reward": pick(trace["reward"]).astype(np.float32),
      "is_terminal": terminal,
      "language_instruction": instruction_of(env, instruction_id),
  }
  metadata = {
      "seed": np.int64(config.seed), "episode_index": np.int64(index),
      "reset_key": reset_key.astype(np.uint32), "success": np.bool_(success),
      "success_step": np.int64(first_success), "length": np.int64(end),
      "instruction_id": np.int64(instruction_id),
      **{f"dr_{k}": np.asarray(v)[b].astype(np.float32)
         for k, v in first.info.get("dr", {}).items()},
  }
  return {"steps": steps, "episode_metadata": metadata}


def write(episode_iter: Iterable[Mapping[str, Any]], data_dir: str, name: str, env,
          config: CollectConfig, env_name: str = "", val_fraction: float = 0.0,
          num_shards: int | None = None, extra_info: Callable[[], dict] | None = None) -> dict:
  """Writes `episode_iter` as the RLDS dataset `name` under `data_dir` (tfds layout), with
  `demo_info.json` beside it (`read_info`); returns the summary that file holds.

  The tfds writer runs in a child process: TensorFlow and Mesa's EGL/llvmpipe cannot share a
  process (creating a GL context after `import tensorflow`, or importing it after, segfaults on
  these machines), and this process renders. Episodes stream to it one at a time. With
  `val_fraction` > 0 every round(1 / val_fraction)-th episode goes to a "val" split (the writer
  then holds the episodes until the end; without, the train split streams to disk).
  `extra_info()` is called once the episodes are consumed; its entries join the summary.
  """
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
  info = {"name": name, "env_name": env_name, "env_class": type(env.unwrapped).__name__,
          "action_space": str(env.config.action_space), "action_dim": int(env.action_size),
          "proprio_dim": int(env.unwrapped.PROPRIOCEPTION_SIZE),
          "state_dim": int(env.observation_size["state"][0]), "cameras": list(config.cameras),
          "image_size": int(config.image_size), "gripper": "last entry; -1 closed, +1 open in the "
          "env; the registered dataset maps it to 0 closed, 1 open (vlajax.data's convention)",
          "collect_config": dataclasses.asdict(config)}
  context = multiprocessing.get_context("spawn")
  episode_queue, result_queue = context.Queue(maxsize=8), context.Queue()
  child = context.Process(target=_writer_process, name="rlds-writer", daemon=True,
                          args=(episode_queue, result_queue, data_dir, name, val_fraction,
                                num_shards))
  child.start()
  counts = {"train_episodes": 0, "val_episodes": 0, "frames": 0, "successes": 0}
  every = int(round(1.0 / val_fraction)) if val_fraction > 0 else 0
  try:
    for i, episode in enumerate(episode_iter):
      _put(episode_queue, episode, child)
      counts["val_episodes" if every and i % every == every - 1 else "train_episodes"] += 1
      counts["frames"] += int(episode["episode_metadata"]["length"])
      counts["successes"] += bool(episode["episode_metadata"]["success"])
    _put(episode_queue, None, child)
    status, value = _result(result_queue, child)
  finally:
    child.join(timeout=600)
    if child.is_alive():
      child.terminate()
  if status != "ok":
    raise RuntimeError(f"writing dataset '{name}' under '{data_dir}' failed: {value}")
  info.update(counts, directory=value, **(extra_info() if extra_info is not None else {}))
  atomic.write_json(os.path.join(value, INFO_FILE), info, indent=1)
  return info


def _put(episode_queue, item, child) -> None:
  while True:
    try:
      episode_queue.put(item, timeout=5.0)
      return
    except queue.Full:
      if not child.is_alive():
        raise RuntimeError(f"the RLDS writer process exited (code {child.exitcode})") from None


def _result(result_queue, child) -> tuple[str, str]:
  while True:
    try:
      return result_queue.get(timeout=5.0)
    except queue.Empty:
      if not child.is_alive():
        return "error", f"the RLDS writer process exited (code {child.exitcode}) without a result"


def _writer_process(episode_queue, result_queue, data_dir: str, name: str, val_fraction: float,
                    num_shards: int | None) -> None:
  """The child of `write`: `writer.write_rlds` over the episodes read from `episode_queue`."""
  from vlajax.data import writer  # pylint: disable=import-outside-toplevel  (imports TF)

  def received():
    parent = multiprocessing.parent_process()
    while True:
      try:
        episode = episode_queue.get(timeout=5.0)
      except queue.Empty:
        if parent is not None and not parent.is_alive():   # the collector died: no dataset
          raise RuntimeError("the collecting process exited before the last episode") from None
        continue
      if episode is None:
        return
      yield episode

  try:
    if val_fraction > 0:
      every = int(round(1.0 / val_fraction))
      splits = {"train": [], "val": []}
      for i, episode in enumerate(received()):
        splits["val" if i % every == every - 1 else "train"].append(episode)
      splits = {k: v for k, v in splits.items() if v}
    else:
      splits = {"train": received()}
    result_queue.put(("ok", writer.write_rlds(data_dir, name, splits, num_shards=num_shards)))
  except Exception as err:  # pylint: disable=broad-except  (reported to the parent)
    result_queue.put(("error", f"{type(err).__name__}: {err}"))


def read_info(directory: str) -> dict:
  """The `demo_info.json` of a demo dataset's version directory (what `write` returned)."""
  path = os.path.join(directory, INFO_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"'{directory}' is not a demo dataset of vlajax.imitation.collect: it has "
                            f"no {INFO_FILE}")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def register(info: Mapping[str, Any], proprio_source: str = "proprio") -> None:
  """Registers a demo dataset (its `read_info`) with `oxe_registry`, so `vlajax.data` reads it
  like an OXE dataset: the `primary` / `wrist` cameras, `proprio` (or with `proprio_source`
  "state" the whole `state` a state policy sees: privileged task information) as the state,
  the env's action with the gripper (last) mapped from the env's -1 / +1 to 0 / 1 and not
  normalized (`to_env_action` maps a model's output back)."""
  if proprio_source not in ("proprio", "state"):
    raise ValueError(f"proprio_source must be 'proprio' or 'state', got {proprio_source!r}")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from vlajax.data import oxe_registry  # pylint: disable=import-outside-toplevel

  cameras, dim = info["cameras"], int(info["action_dim"])

  def action_fn(steps):
    action = tf.cast(oxe_registry.get(steps, "action", info["name"]), tf.float32)
    return tf.concat([action[:, :-1], (action[:, -1:] + 1.0) / 2.0], axis=-1)

  oxe_registry.register(oxe_registry.DatasetSpec(
      name=info["name"], primary_image="image_primary" if "primary" in cameras else None,
      wrist_image="image_wrist" if "wrist" in cameras else None,
      proprio=((proprio_source, 0, int(info[f"{proprio_source}_dim"])),), action_fn=action_fn,
      action_space="ee_delta" if info["action_space"] == "ee_delta" else "joint",
      action_mask=(True,) * dim, normalize_action=(True,) * (dim - 1) + (False,),
      instruction="language_instruction"))


def to_env_action(action):
  """The env's action from a registered demo dataset's (unnormalized) action [..., A] (numpy or
  jax, traceable): the gripper, last, from 0 / 1 (clipped to that range) back to -1 / +1."""
  xp = jnp if isinstance(action, jax.Array) else np
  action = xp.asarray(action, xp.float32)
  gripper = 2.0 * xp.clip(action[..., -1:], 0.0, 1.0) - 1.0
  return xp.concatenate([action[..., :-1], gripper], axis=-1)
