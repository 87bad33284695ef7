"""Batched Cholesky factorizations and triangular solves on the CPU without the jaxlib 0.10 hang.

jaxlib 0.10 splits a large batch of LAPACK calls (`potrf`, `trsm`) over XLA's intra-op thread pool
and blocks until the pieces finish, while XLA's thunk executor runs independent parts of a program
concurrently on that same pool. When as many such calls run at once as the pool has threads (2 on
a 2-core machine), every thread waits for pieces that no thread is free to run, and the program
never finishes. MJX's `forward` factors the mass matrix and the Newton solver's Hessian this way:
`learner.init` for 1024 quadrupeds hung on a 2-core CPU. (jaxlib compiles the parallel path out of
its open-source builds from 0.11.2 on.)

`install()` re-registers the CPU lowerings of `cholesky` and `triangular_solve`: a batch of more
than `chunk_size()` matrices (`CHUNK` with one CPU device, `MULTI_DEVICE_CHUNK` with several) is
handed to jaxlib's kernel in sequential chunks of that size (a `lax.map`), each too small to be
split over the pool. Measured on a 2-core CPU for 1024 18x18 solves: 3.9 ms
chunked vs 2.2 ms split over both cores. GPU and TPU lowerings are untouched. Every vlajax import
installs it (`vlajax/__init__.py`); `VLAJAX_JAXLIB_LINALG=1` keeps jaxlib's lowering.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax._src.interpreters import mlir
from jax._src.lax import linalg as lax_linalg

CHUNK = 128  # matrices per LAPACK call, one CPU device (256 quadruped resets ran, 1024 hung)
# With several CPU devices (`--xla_force_host_platform_device_count`) their programs run on the one
# pool at the same time: the `cpu` PPO preset on 2 devices (128 envs each) hung with 128, ran with 16.
MULTI_DEVICE_CHUNK = 16
_installed = False


def chunk_size() -> int:
  """Matrices per LAPACK call for this process's number of CPU devices."""
  return CHUNK if len(jax.devices("cpu")) == 1 else MULTI_DEVICE_CHUNK


def chunked(fn, *operands, chunk=None):
  """`fn(*operands)` for operands `f[..., r, c]` with equal batch shapes, computed over the
  flattened batch in sequential chunks of `chunk` matrices (default `chunk_size()`; the last
  padded with identities)."""
  chunk = chunk or chunk_size()
  batch_shape = operands[0].shape[:-2]
  flat = [jnp.reshape(x, (-1,) + x.shape[-2:]) for x in operands]
  size = flat[0].shape[0]
  pad = -size % chunk
  if pad:
    flat = [jnp.concatenate([x, jnp.broadcast_to(jnp.eye(*x.shape[-2:], dtype=x.dtype),
                                                 (pad,) + x.shape[-2:])]) for x in flat]
  chunks = [jnp.reshape(x, (-1, chunk) + x.shape[-2:]) for x in flat]
  out = jax.lax.map(lambda xs: fn(*xs), chunks)
  out = jnp.reshape(out, (-1,) + out.shape[-2:])[:size]
  return jnp.reshape(out, batch_shape + out.shape[-2:])


def _batch_size(aval) -> int:
  return int(np.prod(aval.shape[:-2], dtype=np.int64))


def install() -> None:
  """Registers the chunked CPU lowerings (idempotent). A no-op from jax 0.11.2 on, or with
  `VLAJAX_JAXLIB_LINALG=1` in the environment (e.g. to reproduce the hang)."""
  global _installed  # pylint: disable=global-statement
  fixed_upstream = tuple(int(p) for p in jax.__version__.split(".")[:3]) >= (0, 11, 2)
  if _installed or fixed_upstream or os.environ.get("VLAJAX_JAXLIB_LINALG") == "1":
    return
  jaxlib_cholesky = lax_linalg._cholesky_cpu_lowering  # pylint: disable=protected-access
  jaxlib_solve = lax_linalg._triangular_solve_cpu_lower  # pylint: disable=protected-access
  chunked_cholesky = mlir.lower_fun(lambda a: chunked(lax_linalg.cholesky_p.bind, a),
                                    multiple_results=False)

  def cholesky_rule(ctx, operand):
    if _batch_size(ctx.avals_in[0]) <= chunk_size():
      return jaxlib_cholesky(ctx, operand)
    return chunked_cholesky(ctx, operand)

  def solve_rule(ctx, a, b, **params):
    a_aval, b_aval = ctx.avals_in
    if _batch_size(a_aval) <= chunk_size() or a_aval.shape[:-2] != b_aval.shape[:-2]:
      return jaxlib_solve(ctx, a, b, **params)
    solve = functools.partial(lax_linalg.triangular_solve_p.bind, **params)
    return mlir.lower_fun(lambda a, b: chunked(solve, a, b), multiple_results=False)(ctx, a, b)

  mlir.register_lowering(lax_linalg.cholesky_p, cholesky_rule, platform="cpu")
  mlir.register_lowering(lax_linalg.triangular_solve_p, solve_rule, platform="cpu")
  _installed = True
