"""The ``tapeflow`` command as a user runs it: a separate process with its own embedded warehouse."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TAPEFLOW = [sys.executable, "-m", "tapeflow.cli"]


def tapeflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*TAPEFLOW, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_run_when_synthetic_with_max_ticks_then_progress_summary_and_queryable_rows(tmp_path):
    url = f"chdb://{tmp_path}/wh"
    done = tapeflow("run", "--max-ticks", "60000", "--warehouse", url, "--run-id", "cli", "--progress-interval", "0.2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"ticks [\d,]+ \([\d,]+/s\) \| trades [\d,]+", done.stderr), done.stderr  # the progress line
    assert "run cli: 60,000 ticks" in done.stdout
    assert "md_trades" in done.stdout

    queried = tapeflow("query", "SELECT count() AS n FROM md_raw WHERE run_id = 'cli'", "--warehouse", url, "--json", cwd=tmp_path)
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout.strip()) == {"n": 60000}


def test_run_when_default_warehouse_then_created_under_data_of_the_working_directory(tmp_path):
    done = tapeflow("run", "--max-ticks", "2000", "--run-id", "local", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "warehouse").is_dir()


def test_run_when_replay_file_missing_then_clear_error_naming_it(tmp_path):
    done = tapeflow("run", "--feed", "replay", "--path", str(tmp_path / "nope.parquet"), cwd=tmp_path)
    assert done.returncode == 2
    assert "nope.parquet" in done.stderr


def test_query_when_sql_is_wrong_then_error_and_exit_code_2(tmp_path):
    done = tapeflow("query", "SELECT nonsense FROM nowhere", "--warehouse", f"chdb://{tmp_path}/wh", cwd=tmp_path)
    assert done.returncode == 2
    assert "query failed" in done.stderr
