"""vlajax.core."""
