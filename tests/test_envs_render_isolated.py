"""Runs the rendering tests (tests/test_envs_render.py, tests/test_eval_video.py) in a fresh Python
process (see their docstrings: EGL context creation segfaulted inside a long-lived xdist worker)."""
import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_render_tests_pass_in_a_fresh_process():
  env = dict(os.environ, VLAJAX_RENDER_TESTS="1", MUJOCO_GL="egl")
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "not slow", "-p", "no:cacheprovider",
       "tests/test_envs_render.py", "tests/test_eval_video.py"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
  summary = result.stdout.strip().splitlines()[-1]
  assert re.search(r"\b(1[2-9]|[2-9]\d|\d{3,}) passed", summary) and "skipped" not in summary, summary
