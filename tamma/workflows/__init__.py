"""Deterministic workflow code."""
