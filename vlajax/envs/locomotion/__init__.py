"""Legged-locomotion tasks on the project's own MJCF models."""
