"""Evaluation reports (grouping, markdown, scalars, comparison verdicts), policy loaders' bad input
and the eval job's config handling, on constructed episodes (no MJX compile). Videos (EGL
rendering) are in test_eval_video.py, run in a fresh process."""
import json

import numpy as np
import pytest

from vlajax import envs
from vlajax.envs.manipulation import instructions as ins
from vlajax.envs.rollout import Episodes
from vlajax.eval import job, policies, report, stats
from experiments.configs import eval_policy as eval_config


def _episodes(success, instruction=None):
  success = np.asarray(success, bool)
  n = success.size
  return Episodes(success=success, episode_return=np.arange(n, dtype=np.float32),
                  length=np.full(n, 10, np.int32),
                  time_to_success=np.where(success, 4, -1).astype(np.int32), metrics={},
                  instruction=np.full(n, -1, np.int32) if instruction is None
                  else np.asarray(instruction, np.int32))


def test_single_task_report_counts_and_interval(tmp_path):
  result = report.build(_episodes([True] * 45 + [False] * 5), env_name="arm_reach",
                        policy={"kind": "scripted"}, seed=3)
  overall = result["overall"]
  assert (overall["n"], overall["successes"]) == (50, 45)
  np.testing.assert_allclose([overall["ci_low"], overall["ci_high"]], [0.786, 0.957], atol=1e-3)
  assert overall["mean_time_to_success"] == 4.0 and overall["mean_return"] == pytest.approx(24.5)
  assert list(result["per_task"]) == ["arm_reach"] and "per_split" not in result
  report.write(result, tmp_path)
  assert json.loads((tmp_path / "report.json").read_text())["overall"]["successes"] == 45
  markdown = (tmp_path / "report.md").read_text()
  assert "| arm_reach | 50 | 45 | 0.900 | [0.786, 0.957] |" in markdown
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines[-1]["eval/success_rate"] == pytest.approx(0.9)
  assert list((tmp_path / "tensorboard").iterdir())


def test_language_report_groups_by_task_split_and_matrix():
  # Two instructions of the same seen task (both seen phrasings) and one held-out task.
  pick_red = [i for i, e in enumerate(ins.INSTRUCTIONS) if (e.family, e.object) == ("pick", "red")]
  held = next(i for i, e in enumerate(ins.INSTRUCTIONS)
              if (e.family, e.object, e.goal) == ("pick", "yellow", "") and e.phrasing == 0)
  ids = [pick_red[0]] * 3 + [pick_red[1]] * 3 + [pick_red[2]] * 2 + [held] * 4
  success = [1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0]
  result = report.build(_episodes(success, ids), env_name="tabletop_language")
  assert result["per_task"]["pick/red"]["n"] == 8 and result["per_task"]["pick/red"]["successes"] == 5
  assert result["per_task"]["pick/yellow"]["successes"] == 1
  assert {k: v["n"] for k, v in result["per_split"].items()} == {
      "train": 6, "heldout_phrasings": 2, "heldout_tasks": 4}
  matrix = result["generalization"]["family"]["pick"]
  assert matrix["train"]["successes"] == 5 and matrix["heldout_tasks"]["rate"] == 0.25
  assert set(result["generalization"]["object"]) == {"red", "yellow"}
  assert "heldout_tasks" not in result["generalization"]["object"]["red"]
  text = report.markdown(result)
  assert "| pick | 0/2 = 0.00" in text and "**overall**" in text
  assert report.scalars(result)["eval/heldout_tasks/success_rate"] == 0.25


def test_comparison_verdicts():
  def counts(k, n):
    return report.build(_episodes([True] * k + [False] * (n - k)), env_name="e")
  strong = report.compare(counts(85, 100), counts(65, 100))
  assert strong["p_value"] < 0.01 and strong["verdict"].startswith("A > B")
  weak = report.compare(counts(42, 50), counts(37, 50))
  assert weak["verdict"].startswith("cannot claim A > B with 50 / 50 trials")
  assert weak["trials_needed_per_policy"] == stats.min_trials_per_arm(0.84, 0.74,
                                                                      alternative="one-sided")
  assert weak["trials_needed_per_policy"] > 100


def test_report_without_success_metric_has_means_not_rates(tmp_path):
  episodes = _episodes([False] * 4).replace(
      metrics={"tracking/lin_vel_error": np.array([0.1, 0.2, 0.3, 0.4]), "reward/alive": np.ones(4)})
  result = report.build(episodes, env_name="quadruped_joystick", has_success=False)
  overall = result["overall"]
  assert "successes" not in overall and "rate" not in overall and "per_task" not in result
  assert overall["mean_tracking/lin_vel_error"] == pytest.approx(0.25) and overall["n"] == 4
  assert "| mean_tracking/lin_vel_error | 0.25 |" in report.markdown(result)
  assert report.scalars(result)["eval/tracking/lin_vel_error"] == pytest.approx(0.25)
  report.write(result, tmp_path)
  assert "has no success metric" in (tmp_path / "report.md").read_text()


def test_report_of_nothing_is_an_error():
  with pytest.raises(ValueError, match="no episodes"):
    report.build(_episodes([]), env_name="e")


def test_policy_loaders_name_the_problem(tmp_path):
  env = envs.make("cartpole")
  with pytest.raises(ValueError, match="policy kind 'diffusion' unknown"):
    policies.load("diffusion", env)
  with pytest.raises(ValueError, match="'ppo' needs policy.path"):
    policies.load("ppo", env)
  with pytest.raises(FileNotFoundError, match="no run directory"):
    policies.load("sac", env, str(tmp_path / "missing"))
  with pytest.raises(ValueError, match="no scripted expert"):
    policies.load("scripted", env)
  assert policies.load("random", env).info["action_size"] == env.action_size
  info = {"action_size": 3, "obs_key": "state", "observation_size": {"state": (4,)}}
  with pytest.raises(ValueError, match="action size 3; the env Cartpole takes 1"):
    policies._check_fits(env, info, "ppo", "runs/x")  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="reads observation 'pixels'"):
    policies._check_fits(env, dict(info, action_size=1, obs_key="pixels"), "ppo", "runs/x")  # pylint: disable=protected-access


def test_videos_go_to_the_first_episode_of_each_task():
  assert job.video_episodes(np.full(5, -1), 2) == [0, 1]
  pick_red = [i for i, e in enumerate(ins.INSTRUCTIONS) if (e.family, e.object) == ("pick", "red")]
  push = next(i for i, e in enumerate(ins.INSTRUCTIONS) if e.family == "push")
  # episodes 0 and 1 are the same task in two phrasings; 2 is another task
  assert job.video_episodes(np.array([pick_red[0], pick_red[1], push, push]), 5) == [0, 2]
  assert job.video_episodes(np.array([pick_red[0], push]), 1) == [0]


def test_eval_job_config_and_bad_input(tmp_path):
  assert job.parse_overrides("split=heldout, grid=3,noise=0.5") == {
      "split": "heldout", "grid": 3, "noise": 0.5}
  with pytest.raises(ValueError, match="'split' is not key=value"):
    job.parse_overrides("split")
  with pytest.raises(KeyError, match="unknown eval_policy config 'libero'"):
    eval_config.get_config("libero")
  config = eval_config.get_config("language")
  name, env = job.make_env(config)
  assert name == "tabletop_language" and env.config.split == "heldout"
  config = eval_config.get_config("scripted")
  config.env_name = "cartpole"
  config.env_overrides = ""
  config.out_dir = str(tmp_path)
  with pytest.raises(ValueError, match="env 'cartpole' has no success metric"):
    job.run(config)
  config.env_name = "cartpoles"
  with pytest.raises(KeyError, match="cartpoles"):
    job.run(config)
  config = eval_config.get_config("ppo")
  with pytest.raises(ValueError, match="env_name is required"):
    job.make_env(config)
  config.policy.path = str(tmp_path / "nothing")
  with pytest.raises(FileNotFoundError, match="no run directory"):
    job.make_env(config)
  config = eval_config.get_config("random")
  config.env_overrides = "action_spac=joint"
  with pytest.raises(KeyError, match="action_spac"):
    job.make_env(config)
