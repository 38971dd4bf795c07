"""Adapters for the RL libraries people already run (each an optional extra; nothing here is imported by worldsim)."""
