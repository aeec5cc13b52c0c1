"""Versioned DDL: ``sinks/ddl/NNN_name.sql`` applied in order, once, with a checksum.

Every statement is ``CREATE ... IF NOT EXISTS``, so applying a file is idempotent by itself; the
``schema_migrations`` table adds the guarantee that an applied file is never edited: a file whose
checksum differs from the recorded one raises :class:`MigrationChanged` (write a new migration
instead). A file that failed half way is not recorded and is simply applied again on the next start.
Two processes migrating at once both succeed (``IF NOT EXISTS``) and the ReplacingMergeTree on
``version`` keeps one record.

``{db}`` in a file stands for the database name; it is a plain text substitution (not
``str.format``) so braces elsewhere in SQL stay untouched.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Callable

DB_PLACEHOLDER = "{db}"
FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# Statements end with ';' at the end of a line; the DDL files keep ';' out of comments and strings.
STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")


class MigrationError(RuntimeError):
    pass


class MigrationChanged(MigrationError):
    """An applied migration file was edited after it was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str) -> list[str]:
        rendered = self.sql.replace(DB_PLACEHOLDER, database)
        chunks = (chunk.strip() for chunk in STATEMENT_END.split(rendered))
        return [chunk for chunk in chunks if chunk and not _only_comments(chunk)]


def _only_comments(chunk: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in chunk.splitlines())


def bundled_migrations() -> list[Migration]:
    """The DDL shipped in ``sinks/ddl`` (package data), ordered by version."""
    migrations = []
    for entry in resources.files("sinks").joinpath("ddl").iterdir():
        match = FILE_NAME.match(entry.name)
        if match:
            migrations.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two DDL files share a version: {versions}")
    return migrations


def schema_migrations_ddl(database: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations ("
        " version UInt32, name String, checksum String,"
        " applied_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree ORDER BY version"
    )


def apply(
    database: str,
    command: Callable[[str], object],
    applied: Callable[[], dict[int, tuple[str, str]]],
    record: Callable[[Migration], None],
    migrations: list[Migration] | None = None,
) -> list[int]:
    """Apply pending migrations; returns the versions applied now (empty when up to date).

    ``applied()`` returns {version: (name, checksum)} from ``schema_migrations``.
    """
    command(f"CREATE DATABASE IF NOT EXISTS {database}")
    command(schema_migrations_ddl(database))
    done = applied()
    newly: list[int] = []
    for migration in bundled_migrations() if migrations is None else migrations:
        if migration.version in done:
            name, checksum = done[migration.version]
            if checksum != migration.checksum:
                raise MigrationChanged(
                    f"migration {migration.version:03d}_{migration.name}.sql changed after it was applied to"
                    f" database {database!r} (recorded checksum {checksum[:12]}, file {migration.checksum[:12]});"
                    " applied DDL is immutable: revert the edit and add a new migration file"
                )
            continue
        for statement in migration.statements(database):
            command(statement)
        record(migration)
        newly.append(migration.version)
    return newly
