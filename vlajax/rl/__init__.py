"""vlajax.rl."""
