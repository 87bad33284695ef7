"""Runs the evaluation-video tests (tests/test_eval_video.py: EGL rendering) in a fresh Python
process; see tests/test_envs_render_isolated.py."""
from test_envs_render_isolated import run_in_fresh_process


def test_eval_video_tests_pass_in_a_fresh_process():
  run_in_fresh_process("tests/test_eval_video.py", min_passed=4)
