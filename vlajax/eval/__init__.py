"""vlajax.eval."""
