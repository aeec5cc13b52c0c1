"""Feeds: where ticks enter tapeflow (DESIGN §1). Each yields :class:`schemas.RawTick` records.

- :class:`feeds.synthetic.SyntheticFeed` — a deterministic synthetic tape with a planted order-flow
  signal (``feeds/SYNTHETIC.md``).
- :class:`feeds.replay.ReplayFeed` — recorded Parquet/CSV trade or quote files, as fast as possible
  or at N× real time; :mod:`feeds.replay_columns` maps a user's columns onto it (detection,
  ``--columns`` specs, TOML mapping files) and :class:`feeds.replay_merge.MergedReplayFeed` replays
  several such files as one tape in event time.
- :class:`feeds.bar_replay.BarFileFeed` — OHLC(V) bar files as :class:`schemas.Bar` records (no
  ticks: ``bars()`` instead of ``ticks()``), for ``tapeflow run --feed bars``.

Every feed has ``ticks(start_seq=0) -> Iterator[RawTick]``; ``seq`` is the 0-based position in the
feed and ``ticks(n)`` yields exactly ticks n, n+1, ... of a full run (field for field, except the
wall-clock ``ts_ingest``), so a restarted pipeline resumes where it stopped. ``id`` is
``f"{source}:{seq}"``. :func:`make_feed` builds one by kind name (the CLI's entry point).

The synthetic and replay feeds also have ``batches(start_seq=0, max_rows=2_000)``: the same tape as
:class:`schemas.columns.RawTickBatch` columns (a replay's irregular rows as the RawTicks above,
between the batches, in seq order), each batch with a watermark, paced like ``ticks()`` and with
empty heartbeat batches through quiet stretches when paced (:mod:`feeds.batching`). Flattened
through ``to_records()`` they are ``ticks(start_seq)`` but for ``ts_ingest`` (one reading per batch).

Payload format ``tapeflow.v1`` (``RawTick.payload_format``; normalize parses it). ``ts`` is event
time in integer ns since the epoch, UTC, and equals ``RawTick.ts_event``::

    trade: {"type": "trade", "ts": int, "price": float, "size": float,
            "side": "buy" | "sell" | "unknown", "trade_id": str}
    quote: {"type": "quote", "ts": int, "bid": float, "ask": float,
            "bid_size": float, "ask_size": float}

``side`` is the aggressor (the side that crossed the spread). The synthetic feed always fills every
field validly. The replay never drops a row: where a file value is missing or unreadable, the
payload carries it raw (``None``, ``NaN``, or the original text, e.g. ``"price": "n/a"``, a side
like ``"?"``) for normalize to dead-letter with a reason; the tick's ``ts_event`` then comes from the
previous readable row.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

from schemas import RawTick

FEED_KINDS = ("synthetic", "replay", "alpaca")


class Feed(Protocol):
    source: str

    def ticks(self, start_seq: int = 0) -> Iterator[RawTick]: ...


def make_feed(kind: str, **options: Any) -> Feed:
    """A feed by kind name. Options set to ``None`` count as not given, so a CLI can pass one set.

    - ``"synthetic"``: ``speed`` (default 0), ``pacer_factory``, ``rate`` (ticks/s on the wall clock:
      sets ``ticks_per_second`` and paces at 1x, so event time follows the wall clock; the day's
      intensity is flat unless ``u_shape`` is given, so N is what every second carries rather than a
      day's mean that runs twice as fast at the open), and either
      ``config=SyntheticConfig`` or its fields (``seed=1, symbols=(...), max_ticks=10_000, ...``).
    - ``"alpaca"``: live trades and quotes from Alpaca (``symbols``, ``alpaca_feed`` iex|sip,
      ``crypto``); needs ``APCA_API_KEY_ID`` and ``APCA_API_SECRET_KEY``.
    - ``"replay"``: the arguments of :class:`feeds.replay.ReplayFeed` (``path``, ``mapping`` as a
      ColumnMapping or preset name, ``speed``, ``symbol``). ``seed`` does not apply and is ignored;
      ``symbols`` is ignored too (a replay's universe is filtered downstream, not in the feed, so
      ``seq`` stays the position in the file's tape). ``rate`` is an error: use ``speed``.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if kind == "synthetic":
        from feeds.synthetic import SyntheticConfig, SyntheticFeed

        if "path" in options:
            raise ValueError("the synthetic feed reads no file; pass path only with kind 'replay'")
        feed_options = {k: options.pop(k) for k in ("speed", "pacer_factory") if k in options}
        rate = options.pop("rate", None)
        if rate is not None:
            options["ticks_per_second"] = rate
            options.setdefault("u_shape", 0.0)
            if not feed_options.get("speed"):
                feed_options["speed"] = 1.0
        config = options.pop("config", None)
        if config is not None and options:
            raise ValueError(f"pass either config= or config fields, not both (got {sorted(options)})")
        return SyntheticFeed(config or SyntheticConfig(**options), **feed_options)
    if kind == "replay":
        from feeds.replay import ReplayFeed

        if "path" not in options:
            raise ValueError("a replay feed needs path=<file>")
        if "rate" in options:
            raise ValueError("rate paces the synthetic feed; pace a replay with speed (N x real time)")
        options.pop("seed", None)
        options.pop("symbols", None)
        return ReplayFeed(**options)
    if kind == "alpaca":
        from feeds.alpaca import AlpacaFeed
        from config.alpaca_settings import require_keys

        symbols = options.get("symbols")
        if not symbols:
            raise ValueError("an Alpaca feed needs --symbols (e.g. AAPL,MSFT, or BTC/USD with --crypto)")
        settings = require_keys()  # names any missing key before a socket is opened
        return AlpacaFeed(symbols, feed=options.get("alpaca_feed") or settings.data_feed,
                          crypto=bool(options.get("crypto", False)), settings=settings)
    raise ValueError(f"unknown feed kind {kind!r}; kinds: {FEED_KINDS}")


__all__ = ["FEED_KINDS", "Feed", "make_feed"]
