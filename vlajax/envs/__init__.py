"""MJX environments: Playground-shaped API, registry, wrappers, domain randomization, brax adapter."""
from vlajax.envs.base import Env, State
from vlajax.envs.registry import default_adr_config, default_config, make, names, register
from vlajax.envs.wrappers import wrap_for_training


def to_brax(env, **kwargs):
  """Adapter accepted as `environment=` by brax's learners (see `vlajax.envs.brax_adapter`)."""
  from vlajax.envs import brax_adapter  # pylint: disable=import-outside-toplevel
  return brax_adapter.to_brax(env, **kwargs)
