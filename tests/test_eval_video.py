"""The evaluation job end to end with rollout videos (EGL rendering): runs in a fresh process.

Like tests/test_envs_render.py, these tests create EGL contexts, which segfaulted inside long-lived
pytest-xdist workers; `tests/test_eval_video_isolated.py` runs this file in a fresh process with
`VLAJAX_RENDER_TESTS=1` (directly: `VLAJAX_RENDER_TESTS=1 python -m pytest -n 0
tests/test_eval_video.py`).
"""
import dataclasses
import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

# pylint: disable=wrong-import-position
import av
import jax
import numpy as np
import pytest

from experiments.configs import eval_policy as eval_config
from vlajax import envs
from vlajax.envs import camera_wrapper, render
from vlajax.envs import rollout as rollout_lib
from vlajax.eval import closed_loop, job, policies, report, stats, video

pytestmark = pytest.mark.skipif(os.environ.get("VLAJAX_RENDER_TESTS") != "1",
                                reason="run in a fresh process by test_eval_video_isolated.py")


def test_video_of_recorded_states_is_a_readable_mp4(tmp_path):
  env = envs.make("arm_reach")
  model = env.mj_model
  steps = 6
  qpos = np.repeat(model.qpos0[None, None], steps, 0).repeat(2, 1)
  qpos[:, 0, 0] = np.linspace(-1.0, 1.0, steps)           # episode 0 turns its base joint
  data = env.make_data()
  trace = {"qpos": qpos,
           "mocap_pos": np.broadcast_to(np.asarray(data.mocap_pos), (steps, 2, model.nmocap, 3)),
           "mocap_quat": np.broadcast_to(np.asarray(data.mocap_quat), (steps, 2, model.nmocap, 4)),
           "success": np.zeros((steps, 2))}
  trace["success"][3:, 0] = 1
  with render.BatchRenderer(model, ("primary",), 32) as renderer:
    frames = video.render_episode(renderer, trace, 0, length=5)
    with pytest.raises(IndexError, match="episode 2 not in the trace"):
      video.render_episode(renderer, trace, 2)
  assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
  assert not np.array_equal(frames[0], frames[-1])           # the arm moved
  annotated = video.annotate(frames, "reach the target", trace["success"][:5, 0] > 0)
  assert annotated.shape == (5, 64 + 16, 64, 3)
  bar = annotated[:, -4, 32]
  np.testing.assert_array_equal(bar[2], video.RUNNING_RGB)
  np.testing.assert_array_equal(bar[3], video.SUCCESS_RGB)   # latched from the first success
  path = video.write_mp4(tmp_path / "v" / "episode.mp4", annotated, fps=50)
  with av.open(str(path)) as container:
    decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
  assert len(decoded) == 5 and decoded[0].shape == (80, 64, 3)
  with pytest.raises(ValueError, match="uint8"):
    video.write_mp4(tmp_path / "bad.mp4", annotated.astype(np.float32), fps=50)


def test_eval_job_scripted_vs_random_on_reach(tmp_path):
  """The whole job on `arm_reach`: the expert succeeds on every fixed state, random actions on none;
  time to success agrees with the recorded per-step flags; report, videos and the verdict."""
  config = eval_config.get_config("scripted")
  config.update(dict(num_episodes=6, batch_size=4, episode_length=60, seed=11, videos=2,
                     video_size=32, out_dir=str(tmp_path)))
  config.compare.kind = "random"
  progress = []
  result = job.run(config)
  a, b = result["overall"], result["comparison"]["b"]
  assert (a["n"], a["successes"]) == (6, 6) and b["successes"] == 0
  assert (a["ci_low"], a["ci_high"]) == tuple(stats.wilson_interval(6, 6))
  assert result["comparison"]["p_value"] == pytest.approx(
      stats.fisher_exact_test(6, 6, 0, 6, alternative="greater").p_value)
  assert result["comparison"]["verdict"].startswith("A > B")
  saved = json.loads((tmp_path / "a" / "report.json").read_text())
  assert saved["overall"]["successes"] == 6 and len(saved["videos"]) == 2
  assert (tmp_path / "comparison.md").read_text().startswith("A > B")
  for path in saved["videos"]:
    with av.open(path) as container:
      assert sum(1 for _ in container.decode(video=0)) > 1

  # The same states and program through the library: time to success = first recorded success.
  env = envs.make("arm_reach", action_space="ee_delta")
  episodes, trace = closed_loop.evaluate_policy(env, policies.load("scripted", env), 11, 6, 60,
                                                batch_size=4, record_episodes=2,
                                                progress=lambda d, t: progress.append((d, t)))
  assert progress == [(4, 6), (6, 6)]
  flags = trace["success"] > 0                                   # [60, 2]
  first = np.where(flags.any(0), flags.argmax(0) + 1, -1)
  np.testing.assert_array_equal(episodes.time_to_success[:2], first)
  assert np.all(episodes.time_to_success <= episodes.length)
  assert saved["overall"]["mean_time_to_success"] == pytest.approx(episodes.time_to_success.mean())
  overall = report.build(episodes, env_name="arm_reach")["overall"]
  assert (overall["successes"], overall["n"]) == (6, 6)

  # A policy that reads camera images runs on the host loop: rendered frames reach it every step,
  # and on the same states it gets the same episodes as the jitted rollout.
  seen = []
  expert = policies.load("scripted", env)

  def act_seeing(carry, state, rng):
    seen.append((state.obs["images"]["primary"].shape, state.obs["images"]["primary"].dtype))
    return expert.act(carry, state, rng)
  with_cameras = dataclasses.replace(expert, act=act_seeing, cameras=("primary",), image_size=32)
  on_host, _ = closed_loop.evaluate_policy(env, with_cameras, 11, 6, 60, batch_size=4)
  assert seen and all(s == ((4, 32, 32, 3), np.uint8) for s in seen)
  np.testing.assert_array_equal(on_host.success, episodes.success)
  np.testing.assert_array_equal(on_host.length, episodes.length)
  np.testing.assert_allclose(on_host.time_to_success, episodes.time_to_success, atol=1)
  np.testing.assert_allclose(on_host.episode_return, episodes.episode_return, rtol=1e-3, atol=1e-3)


def test_host_rollout_delivers_the_frames_of_each_step():
  """`rollout_on_host`: the images a policy sees after step t are the render of state t."""
  env = envs.make("arm_reach", action_space="ee_delta")
  expert = policies.load("scripted", env)
  camera_env = camera_wrapper.CameraWrapper(rollout_lib.make_batched_env(env, 8),
                                            cameras=("primary",), size=24)
  keys = closed_loop.initial_keys(3, 2)
  record = lambda state: {"image": state.obs["images"]["primary"],
                          **rollout_lib.render_trace(state)}
  episodes = rollout_lib.rollout_on_host(camera_env, jax.jit(expert.act), expert.init_carry(2),
                                         keys, 8, jax.random.PRNGKey(0), observe=expert.observe,
                                         record=record)
  images = episodes.trace["image"]                                 # [8, 2, 24, 24, 3]
  assert images.shape == (8, 2, 24, 24, 3) and images.dtype == np.uint8
  assert not np.array_equal(images[0], images[-1])                 # the arm moved
  assert not np.array_equal(images[-1, 0], images[-1, 1])          # two different initial states
  again = video.render_episode(camera_env.renderer, episodes.trace, 1, length=8)
  np.testing.assert_array_equal(again, images[:, 1])
  camera_env.close()



def _hand_made_chunk_run(run_dir, window: int) -> None:
  """A `train_policy` run directory without training (a fresh head, identity statistics): what
  `imitation.policy.load_policy` reads, made without TensorFlow (this process renders)."""
  from vlajax.core import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from vlajax.core.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel
  from vlajax.imitation import batch as batch_lib  # pylint: disable=import-outside-toplevel
  from vlajax.imitation import policy as policy_lib  # pylint: disable=import-outside-toplevel
  from vlajax.imitation import train as train_lib  # pylint: disable=import-outside-toplevel
  spec = batch_lib.BatchSpec(4, 7, 18, ("image_primary",), window)
  model = policy_lib.make_model("regression", spec, {"width": 32})
  trainer = train_lib.build_trainer(model, train_lib.OptimConfig(ema_decay=None),
                                    policy_lib.example_batch(spec, 2, 32),
                                    mesh_lib.make_mesh({"data": 1}, devices=jax.devices()[:1]))
  ckpt = Checkpointer(run_dir / "checkpoints")
  ckpt.save(1, trainer.init(jax.random.PRNGKey(0)),
            {"step": 1, "config": {"optim": {"ema_decay": 0.0}}})
  ckpt.close()
  ones = lambda n: {"mean": [0.0] * n, "std": [1.0] * n, "q01": [-1.0] * n, "q99": [1.0] * n}
  policy = {"kind": "regression", "fields": {"width": 32},
            "spec": {"action_horizon": 4, "action_dim": 7, "proprio_dim": 18,
                     "image_keys": ["image_primary"], "window": window},
            "image_size": 32, "execute": 2, "normalization": "normal",
            "action_stats": ones(7), "action_normalize": [True] * 6 + [False],
            "proprio_stats": ones(18), "proprio_normalize": [True] * 18,
            "dataset": {"name": "hand_made", "env_name": "arm_reach", "action_space": "ee_delta",
                        "cameras": ["primary"], "train_episodes": 0, "frames": 0}}
  (run_dir / policy_lib.POLICY_FILE).write_text(json.dumps(policy))


def test_chunk_policy_runs_closed_loop_with_history(tmp_path):
  """The `chunk` kind: cameras rendered at the head's size, a history window of 2, 2 of every 4
  actions executed; deterministic for a seed; the job picks the demos' env and action space."""
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  _hand_made_chunk_run(run_dir, window=2)
  env = envs.make("arm_reach", action_space="ee_delta")
  policy = policies.load("chunk", env, path=str(run_dir))
  assert policy.cameras == ("primary",) and policy.image_size == 32
  assert policy.info["execute"] == 2 and policy.info["window"] == 2
  first, _ = closed_loop.evaluate_policy(env, policy, seed=0, num_episodes=2, episode_length=6,
                                         batch_size=2)
  again, _ = closed_loop.evaluate_policy(env, policy, seed=0, num_episodes=2, episode_length=6,
                                         batch_size=2)
  np.testing.assert_array_equal(first.episode_return, again.episode_return)
  assert np.all(np.isfinite(first.episode_return))
  ensembled = policies.load("chunk", env, path=str(run_dir), ensemble=0.01)
  assert ensembled.info["execute"] == 1
  ens, _ = closed_loop.evaluate_policy(env, ensembled, seed=0, num_episodes=2, episode_length=6,
                                       batch_size=2)
  assert np.all(np.isfinite(ens.episode_return))
  config = eval_config.get_config("chunk")
  config.policy.path = str(run_dir)
  name, job_env = job.make_env(config)
  assert name == "arm_reach" and job_env.config.action_space == "ee_delta"
  with pytest.raises(ValueError, match="action size 7"):
    policies.load("chunk", envs.make("arm_reach"), path=str(run_dir))   # joint_delta: 8
  with pytest.raises(ValueError, match="policy.path"):
    policies.load("chunk", env)
