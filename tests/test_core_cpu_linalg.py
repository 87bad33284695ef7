"""Chunked CPU Cholesky / triangular solves (core/cpu_linalg.py) and the >= 1024-env hang they fix."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax.core import cpu_linalg


def _spd(rng, batch, n):
  a = rng.normal(size=batch + (n, n)).astype(np.float32)
  return a @ np.swapaxes(a, -1, -2) + n * np.eye(n, dtype=np.float32)


def test_installed_and_lowering_chunks_large_batches():
  assert cpu_linalg._installed  # pylint: disable=protected-access
  a = jnp.asarray(_spd(np.random.default_rng(0), (3 * cpu_linalg.chunk_size() + 5,), 6))
  hlo = jax.jit(jnp.linalg.cholesky).lower(a).as_text()
  assert "while" in hlo  # the lax.map over chunks
  small = jax.jit(jnp.linalg.cholesky).lower(a[:cpu_linalg.chunk_size()]).as_text()
  assert "while" not in small


@pytest.mark.parametrize("batch", [(7,), (cpu_linalg.chunk_size() + 3,),
                                   (2, cpu_linalg.chunk_size())])
def test_cho_solve_matches_numpy(batch):
  rng = np.random.default_rng(1)
  a, b = _spd(rng, batch, 9), rng.normal(size=batch + (9, 2)).astype(np.float32)
  factor = jax.jit(jnp.linalg.cholesky)(a)
  np.testing.assert_allclose(factor, np.linalg.cholesky(a), rtol=1e-4, atol=1e-4)
  x = jax.jit(lambda a, b: jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(a), b))(a, b)
  np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("left_side", [True, False])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("transpose_a", [True, False])
@pytest.mark.parametrize("unit_diagonal", [True, False])
def test_triangular_solve_variants_on_a_chunked_batch(left_side, lower, transpose_a, unit_diagonal):
  rng = np.random.default_rng(2)
  batch, m = cpu_linalg.chunk_size() + 9, 5
  a = rng.normal(size=(batch, m, m)).astype(np.float32) + 4 * np.eye(m, dtype=np.float32)
  b = rng.normal(size=(batch, m, 3) if left_side else (batch, 3, m)).astype(np.float32)
  x = jax.jit(lambda a, b: jax.lax.linalg.triangular_solve(
      a, b, left_side=left_side, lower=lower, transpose_a=transpose_a,
      unit_diagonal=unit_diagonal))(a, b)
  tri = np.tril(a) if lower else np.triu(a)
  if unit_diagonal:
    tri = np.where(np.eye(m, dtype=bool), 1.0, tri)
  op = np.swapaxes(tri, -1, -2) if transpose_a else tri
  residual = op @ np.asarray(x) - b if left_side else np.asarray(x) @ op - b
  assert np.abs(residual).max() < 1e-4


def test_chunk_shrinks_with_several_cpu_devices():
  assert len(jax.devices("cpu")) == 4  # conftest
  assert cpu_linalg.chunk_size() == cpu_linalg.MULTI_DEVICE_CHUNK < cpu_linalg.CHUNK


_INIT = textwrap.dedent("""
    import sys
    import jax
    from experiments.configs import ppo_locomotion
    from vlajax import envs
    from vlajax.rl import ppo
    config = ppo_locomotion.get_config("cpu")
    config.ppo.num_envs = int(sys.argv[1])
    config.ppo.reset_refresh = int(sys.argv[2])  # -1: the pooled auto-reset of the first hang
    config.ppo.policy_hidden = config.ppo.value_hidden = (16,)
    learner = ppo.Learner(envs.make("quadruped_joystick", config=config.env), config.ppo)
    state = learner.init(jax.random.PRNGKey(0))
    print("initialized", int(jax.device_get(state.iteration)), state.env_state.obs["state"].shape)
""")


def test_quadruped_learner_initializes_at_1024_envs_on_one_cpu_device():
  """The hang of issue 16: one CPU device (the pool shared by every LAPACK call), 1024 envs.
  With `VLAJAX_JAXLIB_LINALG=1` this subprocess hangs on a 2-core machine and times out."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, "-c", _INIT, "1024", "-1"], env=env, capture_output=True,
                       text=True, timeout=400, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "initialized 0 (1024, 48)" in out.stdout


def test_cpu_preset_learner_initializes_on_two_cpu_devices():
  """The second hang: two CPU devices (128 envs each, the `cpu` preset's 256) ran their LAPACK
  calls on the shared pool at once and hung with 128-matrix chunks; they finish with
  `MULTI_DEVICE_CHUNK`."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  out = subprocess.run([sys.executable, "-c", _INIT, "256", "1"], env=env, capture_output=True,
                       text=True, timeout=400, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "initialized 0 (256, 48)" in out.stdout
