"""A stage's recovery folder is made whole or not at all, and one left without its partition by a
kill during an older initialisation is made again instead of failing every restart."""

from __future__ import annotations

import sqlite3

from bytewax.recovery import init_db_dir

from flows.pipeline import recovery_config


def partitions(folder) -> int:
    with sqlite3.connect(folder / "part-0.sqlite3") as db:
        return db.execute("SELECT count(*) FROM parts").fetchone()[0]


def test_recovery_config_when_first_used_then_one_partition_and_no_scratch_left(tmp_path):
    folder = tmp_path / "signals"
    assert recovery_config(folder) is not None
    assert sorted(p.name for p in folder.iterdir()) == ["part-0.sqlite3"]
    assert partitions(folder) == 1


def test_recovery_config_when_a_kill_left_a_partition_file_without_its_partition_then_made_again(tmp_path):
    folder = tmp_path / "signals"
    folder.mkdir()
    with sqlite3.connect(folder / "part-0.sqlite3") as db:  # the tables, but not the partition's row
        db.execute("CREATE TABLE parts (created_at TEXT, part_index INTEGER, part_count INTEGER)")
        db.execute("CREATE TABLE snaps (step_id TEXT, state_key TEXT, epoch INTEGER, ser_change BLOB)")
    recovery_config(folder)
    assert partitions(folder) == 1


def test_recovery_config_when_the_folder_holds_a_partition_then_left_as_it_is(tmp_path):
    folder = tmp_path / "signals"
    folder.mkdir()
    init_db_dir(folder, 1)
    before = (folder / "part-0.sqlite3").stat().st_mtime_ns, (folder / "part-0.sqlite3").stat().st_ino
    recovery_config(folder)
    assert ((folder / "part-0.sqlite3").stat().st_mtime_ns, (folder / "part-0.sqlite3").stat().st_ino) == before
