"""Alpaca's live market-data stream as a tapeflow feed (payload format ``alpaca.v2``).

``AlpacaFeed(symbols, feed="iex"|"sip", crypto=False, settings).ticks(start_seq)`` yields one
:class:`schemas.RawTick` per trade (``T: "t"``) or quote (``T: "q"``) message, ``source``
``alpaca:iex`` / ``alpaca:sip`` / ``alpaca:crypto``, the vendor message as ``payload`` with ``t``
written as RFC 3339 with nanoseconds (the stream sends msgpack timestamps; JSON cannot hold them),
parsed by ``market.tick_parsers.parse_alpaca_v2``. A live stream cannot be replayed: ``start_seq``
only sets where the numbering (``seq``, ``id = f"{source}:{seq}"``) starts.

How it runs. alpaca-py's ``StockDataStream`` / ``CryptoDataStream`` do the protocol (connect,
``auth``, ``subscribe``, msgpack framing); their ``run()`` would start an event loop of its own and
reconnect on its own terms, so tapeflow drives their coroutines (``_start_ws``,
``_send_subscribe_msg``, ``close``) from a daemon thread that owns its loop, and reads the socket
itself. That gives tapeflow the reconnect policy and the counters:

- **Reconnects**: any socket error or close ends the session; the next one starts after an
  exponential backoff with jitter (:class:`venues.rate_limit.Backoff`, reset once data flows
  again). ``reconnects`` counts sessions re-established after a loss. Failed authentication and
  "insufficient subscription" (SIP without a plan) are not retried: the feed ends and ``ticks()``
  raises :class:`AlpacaFeedError` naming the cause.
- **Watchdog**: a known failure is a stream that stays connected but goes silent. While the market
  is open (``market_open()``: the NYSE calendar, holidays and early closes included; crypto always
  is open), ``watchdog_s`` seconds without a trade or quote
  count a ``gap`` and re-send the subscription on the same socket; if the next ``watchdog_s`` stay
  silent too, another gap is counted and the connection is replaced.
- **Backpressure**: ticks pass to the consumer through a bounded queue (``queue_size``). When it is
  full the reader stops reading the socket until there is room (``backpressure_waits`` counts it):
  tapeflow drops nothing itself; frames wait in the websocket's buffer, then TCP's, and if the
  consumer stays behind long enough Alpaca disconnects the slow client, which shows up as a
  reconnect (and a hole in the tape, visible in ``reconnects``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

import msgpack
import websockets

from schemas import RawTick, now_ns
from config.alpaca_settings import AlpacaSettings, require_keys
from market.calendar import ALWAYS_OPEN, XNYS, calendar_by_name
from venues.rate_limit import Backoff

log = logging.getLogger(__name__)

PAYLOAD_FORMAT = "alpaca.v2"
_FATAL_ERRORS = ("auth failed", "failed to authenticate", "insufficient subscription", "forbidden")


class AlpacaFeedError(RuntimeError):
    """The stream refused us for a reason a retry cannot fix (keys, subscription)."""


def us_equity_session_open(now: datetime | None = None) -> bool:
    """Regular US equity hours from the NYSE calendar (``market/calendar.py``, XNYS): 09:30-16:00
    New York on sessions, 13:00 on early-close days, closed on holidays and weekends."""
    moment = now or datetime.now(tz=timezone.utc)
    return calendar_by_name(XNYS).is_open(round(moment.timestamp() * 1_000_000) * 1_000)


def _always_open() -> bool:
    return True


def _stamp_ns(value: Any) -> int | None:
    if isinstance(value, msgpack.Timestamp):
        return value.seconds * 1_000_000_000 + value.nanoseconds
    return None


def _rfc3339(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


class AlpacaFeed:
    def __init__(
        self,
        symbols: Iterable[str],
        feed: str = "iex",
        crypto: bool = False,
        settings: AlpacaSettings | None = None,
        *,
        quotes: bool = True,
        queue_size: int = 10_000,
        watchdog_s: float = 30.0,
        market_open: Callable[[], bool] | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        recv_poll_s: float = 0.25,
    ):
        self.symbols = tuple(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))
        if not self.symbols:
            raise ValueError("the Alpaca feed needs at least one symbol (e.g. AAPL,MSFT or BTC/USD with crypto=True)")
        if feed not in ("iex", "sip"):
            raise ValueError(f"feed must be 'iex' or 'sip', got {feed!r}")
        if watchdog_s <= 0 or queue_size < 1:
            raise ValueError("watchdog_s must be > 0 and queue_size >= 1")
        self.settings = require_keys(settings)
        self.crypto = crypto
        self.calendar = ALWAYS_OPEN if crypto else XNYS  # the sessions its tape follows (market/calendar.py)
        self.feed = feed
        self.source = "alpaca:crypto" if crypto else f"alpaca:{feed}"
        self.url = self.settings.crypto_stream_url() if crypto else self.settings.stock_stream_url(feed)
        self.quotes = quotes
        self.watchdog_s = watchdog_s
        self.market_open = market_open or (_always_open if crypto else us_equity_session_open)
        self.recv_poll_s = recv_poll_s
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.error: AlpacaFeedError | None = None
        self._counts = {"connects": 0, "reconnects": 0, "gaps": 0, "resubscribes": 0, "messages": 0,
                        "trades": 0, "quotes": 0, "errors": 0, "backpressure_waits": 0}
        # Told of every reconnect, lost connection and silence, from the feed's thread (an alert
        # raiser: it must return at once). None: the log lines are all there is.
        self.on_stream_event: Callable[[str], None] | None = None

    def _stream_event(self, text: str) -> None:
        if self.on_stream_event is not None:
            try:
                self.on_stream_event(f"{self.source}: {text}")
            except Exception:  # an alerting failure must not take the feed down
                log.exception("%s: stream event handler failed", self.source)

    def __repr__(self) -> str:
        return f"AlpacaFeed(source={self.source!r}, symbols={self.symbols!r}, url={self.url!r})"

    # ------------------------------------------------------------------ life cycle

    def start(self) -> "AlpacaFeed":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.source}-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop closed in between: the thread is ending anyway
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "AlpacaFeed":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_connected(self, timeout: float) -> bool:
        """True once a session is authenticated and subscribed (for startup checks and tests)."""
        return self._connected.wait(timeout)

    def stats(self) -> dict[str, int]:
        return {**self._counts, "queued": self._queue.qsize()}

    # ------------------------------------------------------------------ consumer side

    def poll(self, timeout: float | None = None) -> tuple[int, int, str, dict[str, Any]] | None:
        """The next tick as ``(ts_event, ts_ingest, symbol, payload)``, or None after ``timeout``."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def ticks(self, start_seq: int = 0) -> Iterator[RawTick]:
        """Live ticks until :meth:`stop` (then the queue is drained) or a fatal stream error."""
        self.start()
        seq = start_seq
        source = self.source
        while True:
            item = self.poll(timeout=0.1)
            if item is None:
                if self._finished.is_set() and self._queue.empty():
                    if self.error is not None:
                        raise self.error
                    return
                continue
            ts_event, ts_ingest, symbol, payload = item
            yield RawTick.model_construct(
                id=f"{source}:{seq}", ts_event=ts_event, ts_ingest=ts_ingest, source=source,
                symbol=symbol, payload_format=PAYLOAD_FORMAT, payload=payload, seq=seq,
            )
            seq += 1

    # ------------------------------------------------------------------ the stream thread

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._sessions())
        except Exception as exc:  # noqa: BLE001 - the thread must always end the tape, never hang it
            log.exception("%s: the feed thread failed", self.source)
            self.error = AlpacaFeedError(f"{self.source}: the feed thread failed: {exc!r}")
        finally:
            self._finished.set()
            loop.close()

    def _make_stream(self):
        from alpaca.data.enums import DataFeed
        from alpaca.data.live import CryptoDataStream, StockDataStream

        key, secret = self.settings.key_pair()
        params = {"ping_interval": 10, "ping_timeout": 30, "max_queue": 1024, "close_timeout": 1}
        if self.crypto:
            stream = CryptoDataStream(key, secret, raw_data=True, url_override=self.url, websocket_params=params)
        else:
            feed = DataFeed.IEX if self.feed == "iex" else DataFeed.SIP
            stream = StockDataStream(key, secret, raw_data=True, feed=feed, url_override=self.url, websocket_params=params)
        # Handlers only tell alpaca-py what to subscribe to: tapeflow reads the socket itself.
        stream.subscribe_trades(_ignore, *self.symbols)
        if self.quotes:
            stream.subscribe_quotes(_ignore, *self.symbols)
        return stream

    async def _sessions(self) -> None:
        self._wake = asyncio.Event()
        had_session = False
        while not self._stop.is_set():
            stream = self._make_stream()
            try:
                await stream._start_ws()  # connect + auth; raises ValueError on an error message
                self._counts["connects"] += 1
                if had_session:
                    self._counts["reconnects"] += 1
                    log.warning("%s: reconnected (reconnect #%d)", self.source, self._counts["reconnects"])
                    self._stream_event(f"reconnected (reconnect #{self._counts['reconnects']})")
                had_session = True
                await stream._send_subscribe_msg()
                self._connected.set()
                await self._consume(stream)
            except ValueError as exc:
                reason = str(exc)
                self._counts["errors"] += 1
                if any(marker in reason.lower() for marker in _FATAL_ERRORS):
                    self.error = AlpacaFeedError(
                        f"{self.source}: Alpaca refused the stream at {self.url}: {reason}. Check "
                        "APCA_API_KEY_ID/APCA_API_SECRET_KEY (paper keys work for data) and, for sip, the data plan."
                    )
                    return
                log.warning("%s: stream error %r; reconnecting", self.source, reason)
            except (websockets.WebSocketException, OSError, asyncio.TimeoutError) as exc:
                self._counts["errors"] += 1
                log.warning("%s: connection lost (%s); reconnecting", self.source, type(exc).__name__)
                self._stream_event(f"connection lost ({type(exc).__name__}); reconnecting")
            finally:
                await _close_quietly(stream)
                self._connected.clear()
            if not self._stop.is_set():
                await self._sleep(self._backoff.next_delay())

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _consume(self, stream) -> None:
        """Read frames until stop, a socket error (raised) or the watchdog gives up (returns)."""
        loop = asyncio.get_running_loop()
        ws = stream._ws
        last_data = loop.time()
        resubscribed = False
        while not self._stop.is_set():
            timeout = self.recv_poll_s
            if self.market_open():
                silent_for = loop.time() - last_data
                if silent_for >= self.watchdog_s:
                    self._counts["gaps"] += 1
                    if resubscribed:
                        log.warning("%s: still silent after resubscribing; replacing the connection", self.source)
                        return
                    log.warning("%s: no data for %.1fs while the market is open; resubscribing", self.source, silent_for)
                    self._stream_event(f"silent for {silent_for:.1f}s while the market is open; resubscribing")
                    await stream._send_subscribe_msg()
                    self._counts["resubscribes"] += 1
                    resubscribed = True
                    last_data = loop.time()
                    continue
                timeout = min(timeout, self.watchdog_s - silent_for)
            else:
                last_data = loop.time()  # a closed market is allowed to be quiet
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout)
            except asyncio.TimeoutError:
                continue
            for message in msgpack.unpackb(frame):
                kind = message.get("T")
                if kind == "t" or kind == "q":
                    await self._deliver(message)
                    last_data = loop.time()
                    resubscribed = False
                    self._backoff.reset()
                elif kind == "error":
                    self._counts["errors"] += 1
                    log.error("%s: stream error %s (%s)", self.source, message.get("msg"), message.get("code"))
                elif kind == "subscription":
                    log.info("%s: subscribed trades=%s quotes=%s", self.source, message.get("trades"), message.get("quotes"))

    async def _deliver(self, message: dict[str, Any]) -> None:
        ts_ingest = now_ns()
        ts_event = _stamp_ns(message.get("t"))
        payload = dict(message)
        if ts_event is not None:
            payload["t"] = _rfc3339(ts_event)
        else:
            ts_event = ts_ingest  # a message without a readable stamp: normalize dead-letters it
        item = (ts_event, ts_ingest, str(message.get("S") or "UNKNOWN"), payload)
        self._counts["messages"] += 1
        self._counts["trades" if message["T"] == "t" else "quotes"] += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._counts["backpressure_waits"] += 1
            await asyncio.get_running_loop().run_in_executor(None, self._put_blocking, item)

    def _put_blocking(self, item: tuple) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


async def _ignore(_message: Any) -> None:
    return None


async def _close_quietly(stream) -> None:
    try:
        await stream.close()
    except Exception:  # noqa: BLE001 - the socket is already gone; closing is best effort
        stream._ws = None
