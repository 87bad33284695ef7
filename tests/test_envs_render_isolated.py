"""Runs the rendering tests (tests/test_envs_render.py) in a fresh Python process (see its
docstring: EGL context creation segfaulted inside a long-lived xdist worker).
tests/test_eval_video_isolated.py does the same for tests/test_eval_video.py, from its own file so
that pytest-xdist (`--dist loadfile`) runs the two on different workers."""
import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_in_fresh_process(test_file: str, min_passed: int) -> None:
  """Runs `test_file` with rendering enabled in a new interpreter; asserts that at least
  `min_passed` tests passed and none was skipped."""
  env = dict(os.environ, VLAJAX_RENDER_TESTS="1", MUJOCO_GL="egl")
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "not slow", "-p", "no:cacheprovider",
       test_file],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
  summary = result.stdout.strip().splitlines()[-1]
  passed = re.search(r"\b(\d+) passed", summary)
  assert passed and int(passed.group(1)) >= min_passed and "skipped" not in summary, summary


def test_render_tests_pass_in_a_fresh_process():
  run_in_fresh_process("tests/test_envs_render.py", min_passed=10)
