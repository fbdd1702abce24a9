"""Synthetic cube datasets written in Unity Perception's formats."""
