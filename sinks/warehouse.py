"""The warehouse client: one URL selects embedded chDB or a ClickHouse server (DESIGN §5).

Both go through clickhouse-connect, so the SQL, the DDL and the Arrow insert path are the same.

Time handling (both backends give the same results):

- Inserts send ns ints as Arrow ``timestamp[ns, UTC]`` into ``DateTime64(9, 'UTC')``: exact to the ns.
- :meth:`Warehouse.query` returns Python rows; ``DateTime64`` values come back as tz-aware UTC
  ``datetime`` (the client runs with ``tz_mode="aware"``; chDB on its own would hand back naive
  datetimes). A ``datetime`` holds microseconds only: select ``toUnixTimestamp64Nano(ts_event)``
  when the nanoseconds matter.
- :meth:`Warehouse.query_df` returns a Polars DataFrame with ``Datetime('ns', 'UTC')`` columns, exact
  to the ns; a zone the engine dropped is put back as UTC (every table stores UTC).

Parameters bind server-side with ClickHouse syntax: ``WHERE symbol = {symbol:String}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence
from urllib.parse import unquote, urlsplit

import clickhouse_connect
import polars as pl
import pyarrow as pa

from schemas import Record
from sinks import migrations, rows
from sinks.urls import redact_url

ACCEPTED_URLS = (
    "chdb:///abs/path (embedded chDB; chdb://relative/path is resolved against the working directory;"
    " chdb://:memory: for a throwaway engine), or http(s)://user:password@host:8123 (ClickHouse server)"
)
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WarehouseURLError(ValueError):
    pass


class WarehouseConnectError(RuntimeError):
    pass


class QueryRows(NamedTuple):
    """``columns, rows = warehouse.query(...)`` unpacks; ``.rows``/``.column_names`` read too."""

    column_names: tuple[str, ...]
    rows: list[tuple]

    def scalar(self) -> Any:
        """The single value of a one-row, one-column result."""
        if len(self.rows) != 1 or len(self.column_names) != 1:
            raise ValueError(f"expected one value, got {len(self.rows)} rows of {len(self.column_names)} columns")
        return self.rows[0][0]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.column_names, row)) for row in self.rows]


@dataclass(frozen=True)
class WarehouseTarget:
    """A parsed warehouse URL."""

    backend: str  # "chdb" or "server"
    chdb_path: str | None = None  # absolute, or ":memory:"
    dsn: str | None = None


def parse_url(url: str) -> WarehouseTarget:
    if url.startswith("chdb://"):
        location = url[len("chdb://"):]
        if not location or "?" in location:
            raise WarehouseURLError(f"bad chDB warehouse URL {url!r}: expected {ACCEPTED_URLS}")
        if location == ":memory:":
            return WarehouseTarget("chdb", chdb_path=":memory:")
        # chdb:///abs/path leaves "/abs/path"; chdb://data/wh is relative. clickhouse-connect would
        # read the second form as host "data" and database "wh", so the path is resolved here.
        return WarehouseTarget("chdb", chdb_path=str(Path(location).expanduser().resolve()))
    if url.startswith(("http://", "https://")):
        return WarehouseTarget("server", dsn=url)
    raise WarehouseURLError(f"unsupported warehouse URL {redact_url(url)!r}: use {ACCEPTED_URLS}")


def redact_message(exc: Exception, url: str) -> str:
    """The client's error text, with the URL's password taken out (clickhouse-connect may echo it)."""
    password = urlsplit(url).password
    text = str(exc)
    if password:
        for spelling in {password, unquote(password)}:
            text = text.replace(spelling, "***")
    return text


# The embedded engine's server settings, given with its path. chDB runs up to two background merges
# per pool thread (2 threads); each holds a block of every column of the parts it merges, and the
# whole pipeline's peak RSS followed the merges running at once (4 at the peaks: 210 MiB of a
# 996 MiB peak). One merge per thread keeps the peak down; the inserts are few and large (50,000
# rows), so the parts still merge as fast as they come.
CHDB_ENGINE_SETTINGS = "background_merges_mutations_concurrency_ratio=1"


class Warehouse:
    """Tables are addressed unqualified (``md_trades``); they live in :attr:`database`."""

    def __init__(self, client: Any, url: str, database: str, backend: str):
        self._client = client
        self.url = url
        self.database = database
        self.backend = backend

    @classmethod
    def connect(cls, url: str, database: str = "tapeflow") -> "Warehouse":
        if not IDENTIFIER.match(database):
            raise ValueError(f"database name {database!r} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
        target = parse_url(url)
        try:
            if target.backend == "chdb":
                if target.chdb_path != ":memory:":
                    Path(target.chdb_path).mkdir(parents=True, exist_ok=True)
                path = target.chdb_path if target.chdb_path == ":memory:" else f"{target.chdb_path}?{CHDB_ENGINE_SETTINGS}"
                client = clickhouse_connect.get_client(interface="chdb", path=path, tz_mode="aware")
            else:
                client = clickhouse_connect.get_client(dsn=target.dsn, tz_mode="aware")
        except Exception as exc:
            hint = (
                " (chDB allows one data path per process: is another path open in this process?)"
                if target.backend == "chdb" else ""
            )
            raise WarehouseConnectError(f"cannot open warehouse {redact_url(url)!r}{hint}: {redact_message(exc, url)}") from exc
        warehouse = cls(client, url, database, target.backend)
        if warehouse._database_exists():
            client.database = database
        return warehouse

    # -- schema ------------------------------------------------------------------------------------

    def apply_ddl(self) -> list[int]:
        """Create the database and apply pending DDL migrations; returns the versions applied now."""
        db = self.database

        def applied() -> dict[int, tuple[str, str]]:
            result = self._client.query(f"SELECT version, name, checksum FROM {db}.schema_migrations FINAL")
            return {version: (name, checksum) for version, name, checksum in result.result_rows}

        def record(migration: migrations.Migration) -> None:
            self._client.insert(
                f"{db}.schema_migrations",
                [[migration.version, migration.name, migration.checksum]],
                column_names=["version", "name", "checksum"],
            )

        newly = migrations.apply(db, self._client.command, applied, record)
        self._client.database = db
        return newly

    def tables(self) -> dict[str, str]:
        """{table name: engine} of the warehouse database (views included)."""
        result = self.query(
            "SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name", {"db": self.database}
        )
        return dict(result.rows)

    def _database_exists(self) -> bool:
        sql = "SELECT count() FROM system.databases WHERE name = {db:String}"
        result = self._client.query(sql, {"db": self.database})
        return result.result_rows[0][0] == 1

    # -- writes ------------------------------------------------------------------------------------

    def insert_records(
        self, table: str, records: Sequence[Record], run_id: str, *, dedup_token: str | None = None
    ) -> int:
        """Insert ``records`` (all of ``table``'s model) as one columnar block; returns the row count.

        ``dedup_token`` names the block: inserting the same token again (a retry after an ambiguous
        error) is dropped by the server, in the table and in the materialized views fed from it.
        Without a token the server deduplicates by the block's content hash: a byte-identical block
        (same rows, same wall-clock fields) inserted again is dropped too.
        """
        if not records:
            return 0
        return self.insert_arrow(table, rows.to_arrow(table, records, run_id), dedup_token=dedup_token)

    def insert_arrow(self, table: str, arrow_table: pa.Table, *, dedup_token: str | None = None) -> int:
        settings: dict[str, Any] = {}
        if dedup_token is not None:
            settings = {
                "insert_deduplicate": 1,
                "insert_deduplication_token": dedup_token,
                "deduplicate_blocks_in_dependent_materialized_views": 1,
            }
        self._client.insert_arrow(table, arrow_table, database=self.database, settings=settings or None)
        # Not the server's written_rows: it reports a deduplicated block as written too.
        return arrow_table.num_rows

    # -- reads -------------------------------------------------------------------------------------

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> QueryRows:
        result = self._client.query(sql, parameters=parameters)
        return QueryRows(tuple(result.column_names), result.result_rows)

    def query_df(self, sql: str, parameters: dict[str, Any] | None = None) -> pl.DataFrame:
        arrow_table = self._client.query_arrow(sql, parameters=parameters, use_strings=True)
        frame = pl.from_arrow(arrow_table)
        assert isinstance(frame, pl.DataFrame)
        naive = [n for n, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime) and dtype.time_zone is None]
        if naive:
            frame = frame.with_columns(pl.col(naive).dt.replace_time_zone("UTC"))
        return frame

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self._client.command(sql, parameters=parameters)

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Warehouse(backend={self.backend!r}, database={self.database!r})"
