"""Shared fixtures: one embedded warehouse per test session, one fresh database per test.

chDB allows one data path per process, so every test that touches the warehouse must use
``warehouse_path`` (never a path of its own); tests are isolated by database instead.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from sinks.warehouse import Warehouse


@pytest.fixture(scope="session")
def warehouse_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("warehouse")


def _migrated_warehouse(path: Path) -> Iterator[Warehouse]:
    database = f"test_{uuid.uuid4().hex[:12]}"
    wh = Warehouse.connect(f"chdb://{path}", database=database)
    wh.apply_ddl()
    try:
        yield wh
    finally:
        wh.command(f"DROP DATABASE IF EXISTS {database}")
        wh.close()


@pytest.fixture
def warehouse(warehouse_path: Path) -> Iterator[Warehouse]:
    """A migrated warehouse on a database of its own, dropped afterwards."""
    yield from _migrated_warehouse(warehouse_path)


@pytest.fixture(scope="module")
def module_warehouse(warehouse_path: Path) -> Iterator[Warehouse]:
    """One migrated database shared by a module's tests (each must write under its own run_id):
    migrating takes ~0.5 s, too much to repeat for every case of a parametrized test."""
    yield from _migrated_warehouse(warehouse_path)
