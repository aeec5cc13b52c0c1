"""``tapeflow run --brokers ... --strategy external:NAME``: trade a strategy that runs outside tapeflow.

The strategy's own app (e.g. ``examples/quix_strategy.py``, a Quix Streams app) reads ``features``
and publishes Signals under ``NAME`` to ``signals``; the run starts no signals stage, and its trading
stage (or risk and pnl with ``--separate-trading``) trades the signals of ``NAME`` and dead-letters
any other strategy's (flows/split.py). A finite tape ends when the app has put its end-of-tape
markers on every partition of ``signals`` (topics/end_of_tape.py): until then the trading stage,
and so the run, waits for it.

The embedded run is one process without topics, so no outside app can reach it: refused there.
"""

from __future__ import annotations

from typing import Any

from strategies.loading import external_strategies


def external_refusal(params: dict[str, Any]) -> str | None:
    """Why ``tapeflow run`` cannot trade the external strategies its options name (None: it can, or none named)."""
    names = external_strategies(params["strategy"])
    if names and not params["brokers"]:
        return (f"--strategy external:{names[0]} trades the signals its own app publishes to the split run's "
                "signals topic, and the embedded run has no topics: run it with --brokers (and --prefix)")
    return None


def signals_line(params: dict[str, Any]) -> str | None:
    """What the run tells its operator when an outside app writes its signals (None: its signals stage does)."""
    names = external_strategies(params["strategy"])
    if not names:
        return None
    prefix, symbols = params["prefix"], params["symbols"] or "THE,RUNS,SYMBOLS"
    return (f"signals: no signals stage; the trading stage trades strategy {names[0]!r}, whose own app must read "
            f"{prefix}features and write {prefix}signals (e.g. python -m examples.quix_strategy --brokers "
            f"{params['brokers']} --prefix '{prefix}' --symbols {symbols} --name {names[0]}); a finite tape ends "
            "once its end-of-tape markers are on every partition of signals")
