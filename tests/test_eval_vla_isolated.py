"""Runs tests/test_eval_vla.py (EGL rendering) in a fresh Python process; see
tests/test_envs_render_isolated.py."""
from test_envs_render_isolated import run_in_fresh_process


def test_eval_vla_tests_pass_in_a_fresh_process():
  run_in_fresh_process("tests/test_eval_vla.py", min_passed=1)
