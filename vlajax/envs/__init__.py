"""vlajax.envs."""
