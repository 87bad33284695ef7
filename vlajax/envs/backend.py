"""MJX physics backends: `impl="jax"` (MJX in JAX) or `impl="warp"` (MuJoCo Warp through MJX).

Every env config has `impl`, and for Warp two capacities (MJX 3.17 `make_data(..., impl="warp",
naconmax=..., njmax=...)`):

  naconmax_per_env  contacts per world. Warp keeps ONE contact buffer shared by all worlds of a
                    vmapped batch, so `make_data` (called once per trace, not per world) gets
                    `naconmax = naconmax_per_env * num_worlds`.
  njmax             constraint rows per world (the `efc` arrays are per world).

`num_worlds` is the batch size of the vmapped reset in progress: `VmapWrapper` declares it with
`num_worlds(B)` around `jax.vmap(env.reset)`; a hand-written `jax.vmap(env.reset)` should do the
same (outside any such context one world is assumed, and Warp drops the contacts that do not fit,
printing an overflow warning and setting `data._impl.overflow`).

Selecting between two Data (auto-reset) must use `select_data`: a Warp Data's contact buffer has no
per-world axis, so a leaf-wise `jnp.where` over it would be wrong. Warp has no autodiff.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import mujoco
from mujoco import mjx

IMPLS = ("jax", "warp")

_NUM_WORLDS = contextvars.ContextVar("vlajax_num_worlds", default=1)


def warp_available() -> bool:
  """True when warp-lang imports (MJX vendors MuJoCo Warp itself)."""
  from mujoco.mjx import warp as mjx_warp  # pylint: disable=import-outside-toplevel
  return bool(mjx_warp.WARP_INSTALLED)


def check_impl(impl: str) -> str:
  """Returns `impl` if it names a usable backend; raises ValueError / ImportError otherwise."""
  if impl not in IMPLS:
    raise ValueError(f"env config impl must be one of {IMPLS}, got {impl!r}")
  if impl == "warp" and not warp_available():
    raise ImportError('impl="warp" needs warp-lang, which is not importable: '
                      'pip install -e ".[warp]"')
  return impl


def check_capacities(naconmax_per_env: int, njmax: int) -> None:
  """Raises ValueError naming the field when a Warp capacity is not a usable int."""
  if not isinstance(naconmax_per_env, int) or naconmax_per_env < 0:
    raise ValueError(f"env config naconmax_per_env must be an int >= 0, got {naconmax_per_env!r}")
  if not isinstance(njmax, int) or njmax < 1:
    raise ValueError(f"env config njmax must be an int >= 1, got {njmax!r}")


@contextlib.contextmanager
def num_worlds(count: int) -> Iterator[None]:
  """Declares that env resets traced inside run vmapped over `count` worlds (nesting multiplies)."""
  token = _NUM_WORLDS.set(_NUM_WORLDS.get() * int(count))
  try:
    yield
  finally:
    _NUM_WORLDS.reset(token)


def current_num_worlds() -> int:
  return _NUM_WORLDS.get()


def make_data(mj_model: mujoco.MjModel, mjx_model: mjx.Model, impl: str, device: jax.Device,
              naconmax_per_env: int = 0, njmax: int = 1) -> mjx.Data:
  """A fresh one-world `mjx.Data` (vmap gives the per-world copies).

  JAX: `mjx.make_data(mjx_model)`, exactly as before backends existed. Warp: built from the
  `MjModel` with the contact buffer sized for `current_num_worlds()` worlds.
  """
  if impl == "jax":
    return mjx.make_data(mjx_model)
  return mjx.make_data(mj_model, device=device, impl="warp",
                       naconmax=naconmax_per_env * current_num_worlds(), njmax=njmax)


def select_data(pred: jax.Array, on_true: mjx.Data, on_false: mjx.Data) -> mjx.Data:
  """`on_true` where `pred` else `on_false`, for one world's Data (`pred`: bool[]) inside vmap.

  Per-world fields are selected; a Warp Data's shared buffers (contacts, `nacon`), which the next
  step's collision pass rewrites, are taken from `on_false`.
  """
  return on_false.where(pred, on_true)


def select_batched_data(pred: jax.Array, on_true: mjx.Data, on_false: mjx.Data) -> mjx.Data:
  """`select_data` over a batch: `pred` bool[B], Data with a leading world axis B."""
  return jax.vmap(select_data)(pred, on_true, on_false)


def capacity_overflow(data: mjx.Data) -> jax.Array:
  """bool[...] per world: Warp dropped contacts or constraint rows in the last step (raise
  `naconmax_per_env` / `njmax`). Solver iteration limits do not count. Always False under JAX."""
  if data.impl.value != "warp":
    return jnp.zeros(data.time.shape, bool)
  # pylint: disable-next=import-outside-toplevel
  from mujoco.mjx.third_party.mujoco_warp import OverflowType
  bits = (OverflowType.NEFC | OverflowType.NJMAX_NNZ | OverflowType.BROADPHASE
          | OverflowType.NARROWPHASE | OverflowType.CCD | OverflowType.NVMAX)
  return (data._impl.overflow & int(bits)) != 0  # pylint: disable=protected-access


def state_shardings(abstract_state, batch_size: int, batched, replicated):
  """Shardings for a batched env state: `batched` on leaves with a leading axis of `batch_size`,
  `replicated` on the rest: a Warp Data's buffers shared by all worlds (`nacon` is i32[1]) do not
  divide over devices. `abstract_state`: the state or its `jax.eval_shape`."""
  def pick(leaf):
    return batched if leaf.ndim and leaf.shape[0] == batch_size else replicated
  return jax.tree.map(pick, abstract_state)


# -- which model fields Warp can batch ---------------------------------------------------------

def is_warp(model: mjx.Model) -> bool:
  return model.impl.value == "warp"


def warp_batchable(field: str) -> bool:
  """True when MuJoCo Warp keeps a per-world copy of model field `field` (so DR may batch it)."""
  from mujoco.mjx.warp import types as warp_types  # pylint: disable=import-outside-toplevel
  return bool(warp_types._BATCH_DIM["Model"].get(field, False))  # pylint: disable=protected-access


def check_batchable(model: mjx.Model, fields: Sequence[str]) -> None:
  """Under Warp, raises ValueError naming the first of `fields` Warp cannot batch per world."""
  if not is_warp(model):
    return
  for field in fields:
    if not warp_batchable(field):
      raise ValueError(f"model field '{field}' cannot be randomized per env under impl='warp' "
                       "(MuJoCo Warp has no per-world copy of it); use impl='jax' or leave it "
                       "out of the randomization")
