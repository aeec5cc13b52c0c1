"""The warehouse edge (DESIGN §5): every topic lands in a ClickHouse table of the same name.

- ``ddl/``: versioned SQL, applied idempotently by :mod:`sinks.migrations`.
- :mod:`sinks.rows`: records -> Arrow columns, one layout per table, derived from the models.
- :mod:`sinks.warehouse`: the client (embedded chDB or a ClickHouse server, one URL).
- :mod:`sinks.writer`: size/age-bounded batches, retried with backoff, never dropped or doubled.

Reading rule: the ReplacingMergeTree tables (everything but md_raw, md_trades, md_quotes) may hold a
duplicate id until a background merge; read them with ``FINAL`` (or ``argMax ... GROUP BY id``).
The Bytewax adapter lives in ``flows/sink.py``; nothing here imports Bytewax.
"""
