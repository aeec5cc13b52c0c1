import os

import pytest

from sinks.migrations import Migration, MigrationChanged, apply
from sinks.warehouse import Warehouse, WarehouseURLError, parse_url


@pytest.mark.parametrize("url", ["ftp://host/db", "clickhouse://host:9000", "/var/data", "chdb://", ""])
def test_unsupported_url_raises_naming_the_accepted_forms(url):
    with pytest.raises(WarehouseURLError) as raised:
        parse_url(url)
    assert "chdb:///abs/path" in str(raised.value) and "http(s)://" in str(raised.value)


def test_bad_url_is_refused_by_connect_before_anything_opens():
    with pytest.raises(WarehouseURLError):
        Warehouse.connect("mysql://localhost/tapeflow")


def test_database_name_must_be_a_plain_identifier():
    with pytest.raises(ValueError, match="plain identifier"):
        Warehouse.connect("chdb://:memory:", database="tapeflow; DROP TABLE x")


def test_absolute_chdb_path_is_kept():
    assert parse_url("chdb:///var/lib/tapeflow").chdb_path == "/var/lib/tapeflow"


def test_relative_chdb_path_is_resolved_against_the_working_directory():
    target = parse_url("chdb://data/warehouse")
    assert target.backend == "chdb"
    assert target.chdb_path == os.path.join(os.path.realpath(os.getcwd()), "data", "warehouse")


def test_http_and_https_urls_select_the_server_backend():
    assert parse_url("http://default:secret@localhost:8123").backend == "server"
    assert parse_url("https://ch.example.com:8443").dsn == "https://ch.example.com:8443"


class FakeEngine:
    def __init__(self):
        self.commands: list[str] = []
        self.records: dict[int, tuple[str, str]] = {}

    def run(self, migrations):
        return apply("wh", self.commands.append, lambda: dict(self.records),
                     lambda m: self.records.__setitem__(m.version, (m.name, m.checksum)), migrations)


def test_migration_statements_are_split_and_the_database_placeholder_filled():
    sql = (
        "-- header; not a statement\nCREATE TABLE IF NOT EXISTS {db}.a (x UInt8) ENGINE = Log;\n\n"
        "CREATE VIEW IF NOT EXISTS {db}.b AS SELECT {x:UInt8};\n"
    )
    migration = Migration(1, "m", sql)
    assert migration.statements("wh") == [
        "-- header; not a statement\nCREATE TABLE IF NOT EXISTS wh.a (x UInt8) ENGINE = Log",
        "CREATE VIEW IF NOT EXISTS wh.b AS SELECT {x:UInt8}",
    ]


def test_applied_migration_is_not_run_again():
    engine = FakeEngine()
    migrations = [Migration(1, "a", "CREATE TABLE IF NOT EXISTS {db}.a (x UInt8) ENGINE = Log;")]
    assert engine.run(migrations) == [1]
    ran = len(engine.commands)
    assert engine.run(migrations) == []
    assert not any("wh.a" in c for c in engine.commands[ran:])


def test_changed_applied_migration_raises_naming_the_file():
    engine = FakeEngine()
    engine.run([Migration(1, "market", "CREATE TABLE IF NOT EXISTS {db}.a (x UInt8) ENGINE = Log;")])
    with pytest.raises(MigrationChanged, match="001_market.sql changed after it was applied"):
        engine.run([Migration(1, "market", "CREATE TABLE IF NOT EXISTS {db}.a (x UInt16) ENGINE = Log;")])
