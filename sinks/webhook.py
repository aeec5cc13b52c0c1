"""Alerts to a webhook (Slack-compatible JSON), off the caller's thread, with retries.

``WebhookNotifier.post(text)`` queues and returns at once: a thread POSTs ``{"text": ...}`` (what
Slack's incoming webhooks, Mattermost, Rocket.Chat and most pagers' generic webhooks accept), and
retries a failed delivery (a connection error, a timeout, HTTP 429 or 5xx) with exponential
backoff, ``attempts`` times in all. A 4xx other than 429 is not retried: the receiver refuses the
message and sending it again changes nothing. The queue is bounded; when it is full (the receiver
is down for long) the newest alert is dropped and counted, never the caller blocked: alerts must
never slow the tape. Every alert is also a row in the warehouse, so a dropped POST loses no record.

The URL of a webhook usually holds its secret token (Slack's does): it is never logged; logs name
the host only.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger("tapeflow.alerts.webhook")


def webhook_host(url: str) -> str:
    """What a log may say about a webhook: scheme and host, never the path or query (the token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/…"


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0  # gave up after every attempt, or refused by the receiver
    dropped: int = 0  # the queue was full
    retries: int = 0


class WebhookNotifier:
    def __init__(self, url: str, attempts: int = 5, backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 timeout_s: float = 5.0, queue_size: int = 1_000):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"alert webhook must be an http(s) URL, got one starting {url[:8]!r}")
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self._url = url
        self.host = webhook_host(url)
        self.attempts = attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.stats = DeliveryStats()
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._deliver_all, name="alert-webhook", daemon=True)
        self._thread.start()

    def post(self, text: str) -> bool:
        """Queue one alert; False (and counted) when the queue is full. Never blocks."""
        try:
            self._queue.put_nowait(text)
            return True
        except queue.Full:
            self.stats.dropped += 1
            log.error("alert webhook %s: queue full, alert dropped (%d so far); it is still in the warehouse",
                      self.host, self.stats.dropped)
            return False

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout_s``), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)
        self._stop.set()

    def _deliver_all(self) -> None:
        while True:
            text = self._queue.get()
            if text is None:
                return
            self._deliver(text)

    def _deliver(self, text: str) -> None:
        body = json.dumps({"text": text}).encode("utf-8")
        delay = self.backoff_initial_s
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(self._url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.stats.delivered += 1
                return
            except urllib.error.HTTPError as exc:
                retryable = exc.code == 429 or exc.code >= 500
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                retryable, problem = True, type(exc).__name__
            if not retryable or attempt == self.attempts:
                self.stats.failed += 1
                log.error("alert webhook %s: not delivered (%s, attempt %d of %d)", self.host, problem, attempt,
                          self.attempts)
                return
            self.stats.retries += 1
            log.warning("alert webhook %s: %s; retrying in %.1fs", self.host, problem, delay)
            if self._stop.wait(delay):
                return
            delay = min(self.backoff_max_s, delay * 2)
