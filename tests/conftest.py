"""Shared pytest setup: 4 host CPU devices so sharding tests run anywhere, and one persistent JAX
compilation cache per test session.

Many tests (and the subprocesses they start: killed-and-resumed runs, multi-host workers) build the
same learners with the same shapes; XLA compilation dominates their time. The cache lives in a
fresh temporary directory for the session (removed at exit), so every program is still compiled
at least once per run and nothing carries over between runs.
"""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Headless rendering (Mesa software EGL); must be set before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache_dir = tempfile.mkdtemp(prefix="vlajax-test-jax-cache-")
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")


# The longest test files (seconds of one worker on 2 cores, measured 2026-12-02), collected first:
# `--dist loadfile` hands files out in collection order, so starting with the long ones keeps one
# worker from running a 5-minute file alone at the end while the other idles.
LONGEST_FIRST = (
    "test_rl_ppo.py", "test_envs_render_isolated.py", "test_eval_video_isolated.py",
    "test_rl_tdmpc.py", "test_rl_sac.py", "test_envs_manipulation_language.py",
    "test_vla_train.py", "test_envs_core.py", "test_rl_multihost_resume.py", "test_envs_brax.py",
    "test_rl_ppo_quadruped.py", "test_core_cpu_linalg.py",
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: order within files kept
