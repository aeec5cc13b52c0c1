"""An external strategy: a Quix Streams app that reads tapeflow's ``features`` and publishes its own
``signals``, which a split run's trading stage trades (``--strategy external:NAME``).

Run it beside a split run, against the same broker and topic prefix, with the run's symbols::

    tapeflow run --brokers localhost:9092 --prefix demo. --symbols AAA,BBB,CCC --max-ticks 200000 \\
        --strategy external:quix_example
    python -m examples.quix_strategy --brokers localhost:9092 --prefix demo. --symbols AAA,BBB,CCC

(start the app once the run has created the topics, or create them first with
``tapeflow topics create --prefix demo.``; the app reads ``features`` from its beginning).

**The rule** (:class:`VolScaledTrend`): each bar, a symbol's score is its 5-bar log return in units
of its 20-bar realized volatility, ``ret_5 / rv_20`` (0 while either is 0 or not a number). A score
of at least ``threshold`` holds the symbol long, at most ``-threshold`` short, anything between
flat; every held symbol gets ``gross / N`` of the capital, N the symbols in the cross-section, so the
book's gross never exceeds ``gross``.

**What the signals topic expects**, and how this app meets it:

- one :class:`schemas.Signal` per symbol per bar, keyed by symbol (the catalog's key), with the
  schema headers, on the partition tapeflow's own stages would use (``QUIX_PRODUCER_CONFIG``);
- ``section_size`` / ``section_seq``: the desk rebuilds each bar's cross-section from signals spread
  over partitions, and releases cross-sections in ``section_seq`` order. The app assembles the
  cross-sections with tapeflow's own :class:`strategies.signals.SignalState` (a bar goes out once
  every symbol of ``--symbols`` has reached it), which numbers them;
- deterministic: the signal ids are ``sig:NAME:SYMBOL:BAR_END``, the scores and weights a function
  of the features alone, so the same features give the same signals (a re-run's are duplicates the
  desk ignores); features of a bar already released go to ``dlq`` (reason ``late``), never dropped;
- the end of a finite tape: once every partition of ``features`` has its end-of-tape marker, the app
  releases the bars it still holds, stops (Quix Streams flushes its producer and commits), puts a
  marker on every partition of ``signals`` and ``dlq`` (:mod:`topics.end_of_tape`) and exits 0. The
  trading stage, and so the run, ends only after those markers.

One process: a cross-section needs every symbol's features, which arrive on every partition (as the
built-in signals stage, which runs keyed by account). Its state is in memory: a restarted app
starts over from the group's committed offsets, so for a replay give it a fresh ``--group`` (or let
it finish). An undecodable feature vector stops the app with the reason (Quix Streams' default).
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Mapping

from schemas import DeadLetter, FeatureVector, Record, Signal
from strategies.base import Strategy
from strategies.portfolio import PortfolioConfig, PortfolioConstructor
from strategies.signals import CrossSection, SignalState
from topics.client import QUIX_CONSUMER_CONFIG, QUIX_PRODUCER_CONFIG, quix_topic, record_headers, record_key
from topics.end_of_tape import EndOfTape


class VolScaledTrend(Strategy):
    """Long a symbol whose ``ret_5 / rv_20`` is at least ``threshold``, short at most ``-threshold``,
    ``gross / N`` each (N: the symbols of the cross-section)."""

    def __init__(self, name: str = "quix_example", threshold: float = 0.5, gross: float = 1.0) -> None:
        if not (threshold > 0 and 0 < gross <= 1):
            raise ValueError(f"threshold must be > 0 and gross in (0, 1], got {threshold}, {gross}")
        self._name, self.threshold, self.gross = name, threshold, gross

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return f"1+{self.threshold:g}:{self.gross:g}"

    def score(self, cross_section: list[FeatureVector]) -> dict[str, float]:
        scores = {}
        for vector in cross_section:
            move, vol = vector.values.get("ret_5", math.nan), vector.values.get("rv_20", math.nan)
            usable = math.isfinite(move) and math.isfinite(vol) and vol > 0
            scores[vector.symbol] = move / vol if usable else 0.0
        return scores

    def target_weights(self, scores: Mapping[str, float]) -> dict[str, float]:
        each = self.gross / max(1, len(scores))
        return {symbol: each if s >= self.threshold else -each if s <= -self.threshold else 0.0
                for symbol, s in sorted(scores.items())}


class ExternalSignalStage:
    """Feature vectors (and end-of-tape markers) in, Signal and DeadLetter records out, for one
    account; ``ended`` once every partition of ``features`` has its marker (``tape_end``: one of them)."""

    def __init__(self, strategy: Strategy, account: str, symbols: tuple[str, ...], max_wait_bars: int = 30,
                 interval: str = "1s") -> None:
        self.state = SignalState(strategy, PortfolioConstructor(PortfolioConfig()), account, symbols,
                                 max_wait_bars=max_wait_bars, interval=interval, emit_orders=False)
        self.markers: dict[int, EndOfTape] = {}
        self.tape_end: EndOfTape | None = None

    @property
    def ended(self) -> bool:
        return self.tape_end is not None

    def on_value(self, value: FeatureVector | EndOfTape) -> list[Record]:
        if type(value) is EndOfTape:
            self.markers[value.partition] = value
            if len(self.markers) < value.partitions or self.ended:
                return []
            self.tape_end = value
            return self._records(self.state.flush())
        return self._records(self.state.on_features(value))

    @staticmethod
    def _records(outputs: list) -> list[Record]:
        records: list[Record] = []
        for item in outputs:
            records.extend(item.signals if type(item) is CrossSection else (item,))
        return records


def run_app(brokers: str, prefix: str, stage: ExternalSignalStage, group: str) -> EndOfTape | None:
    """Run the Quix Streams app until the tape ends (or SIGTERM / Ctrl-C); the tape's end, if it ended.
    The markers are not yet published then: :func:`mark_end`."""
    from quixstreams import Application

    app = Application(broker_address=brokers, consumer_group=group, auto_offset_reset="earliest",
                      auto_create_topics=False, use_changelog_topics=False, producer_extra_config=QUIX_PRODUCER_CONFIG,
                      consumer_extra_config=QUIX_CONSUMER_CONFIG)
    features, signals, dlq = (quix_topic(app, name, prefix) for name in ("features", "signals", "dlq"))

    def step(value):
        records = stage.on_value(value)
        if stage.ended:
            app.stop()  # this message's records still go out; then Quix flushes and commits
        return records

    records = app.dataframe(features).apply(step, expand=True)
    records.filter(lambda r: type(r) is Signal).set_headers(record_headers("signals")).to_topic(
        signals, key=record_key("signals"))
    records.filter(lambda r: type(r) is DeadLetter).set_headers(record_headers("dlq")).to_topic(
        dlq, key=record_key("dlq"))
    app.run()
    return stage.tape_end


def mark_end(brokers: str, prefix: str, name: str, tape_end: EndOfTape) -> int:
    """The app's end-of-tape markers on every partition of what it writes, after its records."""
    from confluent_kafka import Producer

    from topics.end_of_tape import publish_end_of_tape

    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True})
    return publish_end_of_tape(producer, ("signals", "dlq"), tape_end.tape, f"external:{name}", tape_end.stages,
                               prefix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.quix_strategy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default=os.environ.get("TAPEFLOW_KAFKA_BOOTSTRAP", "localhost:9092"))
    parser.add_argument("--prefix", default="", help="the run's topic prefix")
    parser.add_argument("--symbols", required=True, help="the run's symbols, comma-separated: a bar's cross-section")
    parser.add_argument("--name", default="quix_example",
                        help="the strategy name (tapeflow run --strategy external:NAME)")
    parser.add_argument("--account", default=os.environ.get("TAPEFLOW_ACCOUNT", "paper"), help="the desk's account")
    parser.add_argument("--threshold", type=float, default=0.5, help="|ret_5 / rv_20| that takes a position")
    parser.add_argument("--gross", type=float, default=1.0, help="the book's gross, a fraction of capital")
    parser.add_argument("--interval", default="1s",
                        help="the feature vectors' bar interval (TAPEFLOW_FEATURE_INTERVAL)")
    parser.add_argument("--max-wait-bars", type=int, default=30,
                        help="bars a silent symbol may trail before a cross-section goes without it "
                             "(raise it for replays faster than real time)")
    parser.add_argument("--group", default=None, help="Kafka consumer group (default: tapeflow-external-NAME-PREFIX)")
    args = parser.parse_args(argv)
    symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
    stage = ExternalSignalStage(VolScaledTrend(args.name, args.threshold, args.gross), args.account, symbols,
                                args.max_wait_bars, args.interval)
    group = args.group or f"tapeflow-external-{args.name}-{args.prefix or 'default'}"
    tape_end = run_app(args.brokers, args.prefix, stage, group)
    if tape_end is None:
        print(f"{args.name}: stopped before the end of a tape ({stage.state.stats})", flush=True)
        return 0
    sent = mark_end(args.brokers, args.prefix, args.name, tape_end)
    print(f"{args.name}: end of tape {tape_end.tape}: {stage.state.stats['released']} cross-sections, "
          f"{sent} markers on signals and dlq", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
