"""The progress line and the end-of-run summary of a pipeline run.

Counters are bumped by the feed source (ticks) and the warehouse sink (records per table) from the
dataflow thread; a daemon thread prints one line per interval. Plain int updates are atomic enough
under the GIL for a display.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import TextIO


class RunProgress:
    def __init__(self, interval_s: float = 1.0, stream: TextIO | None = None, clock=time.monotonic):
        self.interval_s = interval_s
        self.stream = stream or sys.stderr
        self.clock = clock
        self.ticks = 0
        self.records: Counter[str] = Counter()
        self.started = clock()
        self.finished: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ticks = 0
        self._last_time = self.started

    def count_ticks(self, n: int) -> None:
        self.ticks += n

    def count_records(self, table: str, n: int) -> None:
        self.records[table] += n

    @property
    def elapsed_s(self) -> float:
        end = self.finished if self.finished is not None else self.clock()
        return max(end - self.started, 1e-9)

    def line(self) -> str:
        now = self.clock()
        window = max(now - self._last_time, 1e-9)
        rate = (self.ticks - self._last_ticks) / window
        self._last_ticks, self._last_time = self.ticks, now
        r = self.records
        return (
            f"[{self.elapsed_s:7.1f}s] ticks {self.ticks:,} ({rate:,.0f}/s) | trades {r['md_trades']:,} "
            f"quotes {r['md_quotes']:,} | bars {r['md_bars']:,} | features {r['features']:,} "
            f"| orders {r['orders_intent']:,} exec reports {r['exec_reports']:,} | dlq {r['dlq']:,}"
        )

    def start(self) -> "RunProgress":
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                print(self.line(), file=self.stream, flush=True)

        self.started = self._last_time = self.clock()
        self._thread = threading.Thread(target=loop, name="tapeflow-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.finished = self.clock()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def summary(self) -> dict[str, float]:
        return {
            "ticks": self.ticks,
            "elapsed_s": round(self.elapsed_s, 3),
            "ticks_per_s": round(self.ticks / self.elapsed_s, 1),
            **{f"rows_{table}": n for table, n in sorted(self.records.items())},
        }
