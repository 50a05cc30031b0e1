"""Hydra entry points (embedlab-eval, ...)."""
