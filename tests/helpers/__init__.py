"""Helpers tests share (plain functions and classes; fixtures live in tests/conftest.py)."""
