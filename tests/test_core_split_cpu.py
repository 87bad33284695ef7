"""`mesh.split_cpu`: the host CPU as several XLA devices, checked in fresh processes (the test
process already has its 4 devices from conftest's XLA_FLAGS)."""
import os
import subprocess
import sys

from vlajax.core import mesh as mesh_lib


def _run(code: str) -> str:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout.split()


def test_split_cpu_sets_the_count_before_backends_exist():
  out = _run("import os, jax\n"
             "from vlajax.core import mesh\n"
             "print(mesh.split_cpu(3), len(jax.devices('cpu')))\n"
             "print(mesh.split_cpu(2), len(jax.devices('cpu')))\n")  # too late: backend exists
  assert out == ["3", "3", "3", "3"]


def test_auto_count_divides_the_batches():
  cores = os.cpu_count() or 1
  out = _run("import os, jax\n"
             "from vlajax.core import mesh\n"
             f"print(mesh.split_cpu(0, divides=({cores * 2 + 1},)), len(jax.devices('cpu')))\n")
  # 2c + 1 is odd and > c, so the auto count is its largest divisor <= c: 1 for c = 2 (these machines).
  expected = max(d for d in range(1, cores + 1) if (cores * 2 + 1) % d == 0)
  assert out == [str(expected), str(expected)]


def test_preset_flags_win_and_bad_counts_are_named():
  # In this process XLA_FLAGS (conftest) fixed 4 devices: split_cpu leaves them.
  assert mesh_lib.split_cpu(1) == 4
  env_code = ("import jax\nfrom vlajax.core import mesh\n"
              "try:\n  mesh.split_cpu(-2)\nexcept ValueError as e:\n  print('ERR', 'cpu_devices' in str(e))\n")
  assert _run(env_code) == ["ERR", "True"]
