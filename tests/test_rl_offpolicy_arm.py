"""The `smoke_arm` presets of SAC and TD-MPC on `arm_reach`.

TD-MPC's runs its main's body (`loop.run_experiment`): config preset to a trained, evaluated,
checkpointed and loadable policy on the arm. A full run costs an arm-step compile for training and
one for evaluation (~4 min of CPU for either learner, measured on the 2-core machine), so SAC's
preset is checked without compiling: its learner is built from the preset and its init, training
iteration and evaluation are traced on the arm (`jax.eval_shape`), which checks the preset's
shapes, keys and metrics end to end. Whether the `arm_reach` presets learn the task is not
claimed (their values are untuned starting points).
"""
import json

import jax
import numpy as np
import pytest

from experiments.configs import sac_control, tdmpc_control
from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.rl import loop, sac, tdmpc


def _check_preset(config, section):
  assert config.env_name == "arm_reach"
  assert config.env.episode_length == config[section].episode_length == 20
  assert config[section].num_iterations == 2 and config[section].num_envs == 8


# ~4 min of CPU (one TD-MPC compile on the arm): run with `python -m pytest -m slow -n 0 tests/test_rl_offpolicy_arm.py`.
@pytest.mark.slow
def test_tdmpc_smoke_arm_preset_trains_evaluates_and_loads(tmp_path):
  config = tdmpc_control.get_config("smoke_arm")
  _check_preset(config, "tdmpc")
  config.workdir = str(tmp_path)
  state = loop.run_experiment(config, "tdmpc", tdmpc.Learner, "TD-MPC")
  assert int(state.iteration) == config.tdmpc.num_iterations
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in records if "eval/success_rate" in r]
  assert evals and 0.0 <= evals[-1]["eval/success_rate"] <= 1.0, sorted(records[-1])
  assert "eval/reward/reach" in evals[-1], sorted(evals[-1])
  assert any("loss/consistency" in r for r in records), sorted(records[-1])

  # The policy prior (`plan=False`); the planner is tested on cart-pole.
  policy, info = tdmpc.load_policy(tmp_path, plan=False)
  env = envs.make("arm_reach")
  assert info["action_size"] == env.action_size == 8
  action = np.asarray(policy({"state": np.zeros(env.observation_size["state"], np.float32)}))
  assert action.shape == (8,) and np.all(np.abs(action) <= 1.0)


def test_sac_smoke_arm_preset_builds_and_traces_on_the_arm():
  config = sac_control.get_config("smoke_arm")
  _check_preset(config, "sac")
  assert config.sac.critic_obs_key == "privileged_state"
  env = envs.make(config.env_name, config=config.env)
  learner = sac.Learner(env, config.sac, mesh_lib.make_mesh({"data": -1}))
  key = jax.random.PRNGKey(0)
  state = jax.eval_shape(learner.init, key)
  state, metrics = jax.eval_shape(learner.iteration, state)
  assert {"loss/critic", "loss/actor", "rollout/reward"} <= set(metrics), sorted(metrics)
  evals = jax.eval_shape(lambda s, k: learner.evaluate(s, k, config.run.num_eval_envs), state, key)
  assert {"eval/success_rate", "eval/reward/reach"} <= set(evals), sorted(evals)
