"""vlajax.policies."""
