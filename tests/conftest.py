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
