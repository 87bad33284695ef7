"""Ensembles of independently initialized networks (twin-Q critics, TD-MPC's Q heads).

`ensemble(Module, n)(...)` is a Flax module whose parameters carry a leading axis of size n and
whose output is stacked `f32[n, ...]`; the input is shared. RNG streams (`params`, `dropout`) are
split per member.
"""
import flax.linen as nn


def ensemble(module_cls, size: int):
  return nn.vmap(module_cls, variable_axes={"params": 0},
                 split_rngs={"params": True, "dropout": True},
                 in_axes=None, out_axes=0, axis_size=size)
