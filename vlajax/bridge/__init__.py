"""vlajax.bridge."""
