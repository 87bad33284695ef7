"""vlajax.data."""
