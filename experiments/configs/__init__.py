"""Experiment configs (ml-collections `get_config(arg)`)."""
