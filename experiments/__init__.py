"""Runnable experiment entry points: `python -m experiments.<job> --config=...`."""
