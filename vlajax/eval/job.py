"""The evaluation job behind `python -m experiments.eval_policy` (config: experiments/configs/eval_policy.py).

`run(config)` resolves the env (the policy's training env unless `env_name` is set, with
`env_overrides`), loads the policy (and the comparison policy) with `eval.policies.load`, evaluates
each on the same seeded initial-state set (`closed_loop.evaluate_policy`, progress with ETA),
writes the report (`report.write`: JSON, markdown, TensorBoard) and the first episodes' videos to
`out_dir`, and returns the report dict (with `comparison` when a second policy was given).
`policy.kind=remote` evaluates a policy served at `policy.path` = host:port through the bridge on
the arm task's native-MuJoCo twin instead (`eval.served`), from the same initial states.
"""
from __future__ import annotations

import ast
import pathlib
import sys
import time

import ml_collections

from vlajax import envs
from vlajax.core import atomic
from vlajax.eval import closed_loop, policies, report as report_lib, video

RUN_KINDS = ("ppo", "sac", "tdmpc")


def parse_overrides(text: str) -> dict:
  """"key=value,..." -> {key: value}; values parsed as Python literals, else kept as strings."""
  out = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    if "=" not in item:
      raise ValueError(f"env_overrides entry '{item}' is not key=value")
    key, value = item.split("=", 1)
    try:
      out[key.strip()] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key.strip()] = value
  return out


def _run_env(kind: str, path: str, step: int | None):
  from vlajax.rl import loop  # pylint: disable=import-outside-toplevel
  checkpointer, _, run_config, _, _ = loop.open_run(path, kind, step)
  checkpointer.close()
  return run_config["env_name"], ml_collections.ConfigDict(run_config["env"])


def parse_address(path: str) -> tuple[str, int]:
  """"host:port" of a served policy (`policy.kind=remote`)."""
  host, _, port = str(path).rpartition(":")
  if not host or not port.isdigit():
    raise ValueError(f"a remote policy's path must be host:port (a running `serve_policy`), "
                     f"got {path!r}")
  return host, int(port)


def _connect(path: str):
  from vlajax.bridge.client import PolicyClient  # pylint: disable=import-outside-toplevel
  host, port = parse_address(path)
  return PolicyClient(host, port, connect_timeout=10.0, request_timeout=5.0)


def make_env(config) -> tuple[str, object]:
  """(env name, unbatched env) of the job: `env_name`, or the first policy's run env (a served
  policy's: the `env_name` its server advertises, e.g. a served PPO run's)."""
  overrides = parse_overrides(config.env_overrides)
  step = None if config.policy.step < 0 else config.policy.step
  name, base = config.env_name, None
  if config.policy.kind in RUN_KINDS and config.policy.path:
    run_name, run_env = _run_env(config.policy.kind, config.policy.path, step)
    if not name or name == run_name:
      name, base = run_name, run_env
  if config.policy.kind == "chunk" and config.policy.path:
    from vlajax.imitation import policy as imitation_policy  # pylint: disable=import-outside-toplevel
    demos = imitation_policy.read_policy_file(config.policy.path)["dataset"]
    name = name or demos["env_name"]
    overrides.setdefault("action_space", demos["action_space"])
  if config.policy.kind == "remote" and not name:
    with _connect(config.policy.path) as client:
      name = str(client.metadata.get("env_name", ""))
  if not name:
    raise ValueError(f"config.env_name is required for a '{config.policy.kind}' policy")
  return name, envs.make(name, config=base, **overrides)


def _progress(label: str):
  start = time.time()

  def show(done: int, total: int) -> None:
    elapsed = time.time() - start
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("nan")
    sys.stdout.write(f"{label}: {done}/{total} episodes  {rate:.2f} episodes/s  ETA {eta:.0f}s\n")
    sys.stdout.flush()
  return show


def _evaluate_served(env, env_name: str, policy_config, config, out: pathlib.Path) -> dict:
  """A policy served at `policy_config.path` (host:port), through the bridge on the env's
  native-MuJoCo twin (`eval.served`); no videos (the twin's episodes are not recorded)."""
  from vlajax.eval import served  # pylint: disable=import-outside-toplevel
  with _connect(policy_config.path) as client:
    planner, info = policies.served_policy(client)
    if info["action_size"] != env.action_size:
      raise ValueError(f"served policy {info['model_id']!r} at {policy_config.path} has "
                       f"action size {info['action_size']}; env '{env_name}' takes "
                       f"{env.action_size}")
    chunk = info["action_horizon"]
    execute = policy_config.get("execute") or chunk
    execution = served.ExecutionConfig.execute_k_of_h(chunk, execute)
    episodes, bridge = served.evaluate_served(
        env, planner, config.seed, config.num_episodes,
        config.episode_length or None, execution=execution, progress=_progress("remote"))
  result = report_lib.build(episodes, env_name=env_name, seed=config.seed, policy={
      "kind": "remote", "path": policy_config.path, "model_id": info["model_id"]})
  result["bridge"] = bridge
  report_lib.write(result, out)
  return result


def _evaluate_one(env, env_name: str, policy_config, config, out: pathlib.Path,
                  has_success: bool = True) -> dict:
  if policy_config.kind == "remote":
    return _evaluate_served(env, env_name, policy_config, config, out)
  step = None if policy_config.step < 0 else policy_config.step
  policy = policies.load(policy_config.kind, env, policy_config.path or None, step,
                         plan=policy_config.plan, seed=policy_config.seed,
                         execute=policy_config.get("execute") or None,
                         ensemble=float(policy_config.get("ensemble", 0.0)),
                         prompt=policy_config.get("prompt", ""))
  length = config.episode_length or None
  episodes, trace = closed_loop.evaluate_policy(
      env, policy, config.seed, config.num_episodes, length, config.batch_size,
      policy_seed=policy_config.seed,
      record_episodes=min(config.batch_size, config.num_episodes) if config.videos else 0,
      progress=_progress(policy_config.kind))
  meta = {"kind": policy_config.kind, "path": policy_config.path,
          "step": policy.info.get("step")}
  result = report_lib.build(episodes, env_name=env_name, policy=meta, seed=config.seed,
                            has_success=has_success)
  report_lib.write(result, out)
  if trace is not None:
    result["videos"] = _videos(env, episodes, trace, config, out, has_success)
    report_lib.write(result, out)
  return result


def video_episodes(instruction, count: int) -> list[int]:
  """Which recorded episodes get videos: the first `count`, or for a language env the first
  episode of each task (family, object, goal), in order, up to `count`."""
  from vlajax.envs.manipulation import instructions  # pylint: disable=import-outside-toplevel
  instruction = [int(i) for i in instruction]
  if not instruction or instruction[0] < 0:
    return list(range(min(count, len(instruction))))
  first = {}
  for index, ins_id in enumerate(instruction):
    e = instructions.INSTRUCTIONS[ins_id]
    first.setdefault((e.family, e.object, e.goal), index)
  return sorted(first.values())[:count]


def _videos(env, episodes, trace, config, out: pathlib.Path, has_success: bool) -> list[str]:
  from vlajax.envs import render  # pylint: disable=import-outside-toplevel
  from vlajax.envs.manipulation import instructions  # pylint: disable=import-outside-toplevel
  paths = []
  fps = 1.0 / float(getattr(env, "dt", 0.05))
  with render.BatchRenderer(env.mj_model, (config.video_camera,), config.video_size) as renderer:
    for i in video_episodes(episodes.instruction[:trace["qpos"].shape[1]], config.videos):
      length = int(episodes.length[i])
      frames = video.render_episode(renderer, trace, i, length, config.video_camera)
      task = (instructions.text(episodes.instruction[i]) if episodes.instruction[i] >= 0
              else type(env).__name__)
      outcome = ("success" if episodes.success[i] else "failure") if has_success else (
          f"return {episodes.episode_return[i]:.1f}")
      frames = video.annotate(frames, f"{task}: {outcome}",
                              trace["success"][:length, i] > 0)
      paths.append(str(video.write_mp4(out / "videos" / f"episode_{i:03d}.mp4", frames, fps)))
  return paths


def run(config: ml_collections.ConfigDict) -> dict:
  """Runs the job (see the module doc); returns the report of `policy` (with `comparison`)."""
  if config.num_episodes < 1:
    raise ValueError(f"config.num_episodes must be >= 1, got {config.num_episodes}")
  env_name, env = make_env(config)
  if config.require_success:
    closed_loop.check_success_metric(env, env_name)
  has_success = closed_loop.has_success_metric(env)
  out = pathlib.Path(config.out_dir)
  if config.compare.kind and not has_success:
    raise ValueError(f"comparing two policies needs a success metric; env '{env_name}' has none")
  result = _evaluate_one(env, env_name, config.policy, config,
                         out / "a" if config.compare.kind else out, has_success)
  if config.compare.kind:
    other = _evaluate_one(env, env_name, config.compare, config, out / "b", has_success)
    result["comparison"] = report_lib.compare(result, other)
    (out / "comparison.md").parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "comparison.md", result["comparison"]["verdict"] + "\n")
  return result
