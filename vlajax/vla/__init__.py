"""vlajax.vla."""
