"""The `vla` eval kind closed loop on rendered cameras (EGL rendering): runs in a fresh process,
`tests/test_eval_vla_isolated.py` (directly: `VLAJAX_RENDER_TESTS=1 python -m pytest -n 0
tests/test_eval_vla.py`); its own file so that it runs beside tests/test_eval_video.py."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

# pylint: disable=wrong-import-position
import numpy as np
import pytest

from vlajax import envs
from vlajax.eval import closed_loop, policies

pytestmark = pytest.mark.skipif(os.environ.get("VLAJAX_RENDER_TESTS") != "1",
                                reason="run in a fresh process by test_eval_vla_isolated.py")


def test_vla_policy_runs_closed_loop_on_rendered_cameras(tmp_path):
  """A real (4-step) `train_vla` run sized for `arm_reach` evaluated closed loop: both cameras
  rendered at the model's image size every step, the prompt tokenized by the run's tokenizer,
  chunks replanned every `execute` steps; the model's sampling noise reaches the episodes."""
  from experiments import train_vla  # pylint: disable=import-outside-toplevel
  from experiments.configs import train_vla as vla_configs  # pylint: disable=import-outside-toplevel
  env = envs.make("arm_reach", action_space="ee_delta")
  c = vla_configs.get_config("smoke")
  c.model.update(dict(action_dim=env.action_size, state_dim=env.observation_size["state"][0],
                      num_cameras=2))
  c.train.update(dict(steps=4, eval_every=0, checkpoint_every=4))
  c.mesh.update(dict(data=1, fsdp=1, num_devices=1))
  run_dir = train_vla.train(c, str(tmp_path / "vla"))["run_dir"]
  policy = policies.load("vla", env, run_dir, execute=2, prompt="reach the target")
  assert policy.cameras == ("primary", "wrist") and policy.info["execute"] == 2
  first, _ = closed_loop.evaluate_policy(env, policy, 5, 3, 6, batch_size=3, policy_seed=0)
  again, _ = closed_loop.evaluate_policy(env, policy, 5, 3, 6, batch_size=3, policy_seed=0)
  other, _ = closed_loop.evaluate_policy(env, policy, 5, 3, 6, batch_size=3, policy_seed=1)
  assert np.all(first.length == 6) and np.all(np.isfinite(first.episode_return))
  np.testing.assert_array_equal(first.episode_return, again.episode_return)
  assert not np.allclose(first.episode_return, other.episode_return)

  push = envs.make("arm_push_cube", action_space="ee_delta")           # obs["state"] is (40,)
  with pytest.raises(ValueError, match=r"state of shape \(31,\).*\(40,\)"):
    policies.load("vla", push, run_dir)
  with pytest.raises(ValueError, match="needs policy.path"):
    policies.load("vla", env)
