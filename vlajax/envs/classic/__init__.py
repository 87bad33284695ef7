"""Cheap classic-control MJX envs used by learner tests across the project."""
