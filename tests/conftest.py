"""Registers the shared fixtures (defined in tests/fixtures.py, per the project's style)."""

from tests.fixtures import module_warehouse, warehouse, warehouse_path  # noqa: F401
