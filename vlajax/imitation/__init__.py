"""One training loop for every chunk policy: action heads (`vlajax.policies`) and the VLA."""
