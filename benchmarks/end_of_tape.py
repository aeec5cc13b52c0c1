"""The end of a finite tape over Kafka: how long ``tapeflow run --brokers`` takes from the feed's
last tick to the end of the run (the sink having landed everything), and what it landed.

    python benchmarks/end_of_tape.py --brokers HOST:PORT [--runs 2] [--file PATH] [--speed N]
                                     [--compare CODE_DIR]

Unpaced, the file is published before the stage processes have started, so the figure is mostly
their start-up; paced (``--speed 200``: ~15 s for the Binance futures file), they are caught up
when the tape ends, and the figure is the end of the tape alone.

``--compare``: another checkout of tapeflow (say, the commit before end-of-tape markers, from
``git archive``), run alternately with this one: the runs before markers ended once every stage's
lag had read zero for 2 s (and left the last bars open), the runs with them end when the sink has
every stage's markers.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FUTURES = REPO.parent / "shared" / "data" / "real" / "binance-futures-btcusdt-trades-20200222.csv"


def one_run(code: Path, brokers: str, path: Path, speed: float) -> dict[str, float]:
    """Seconds from the ``feed done`` line to the run's exit, and the md_bars rows it landed."""
    work = Path(tempfile.mkdtemp(prefix="eot-bench-"))
    env = {**os.environ, "PYTHONPATH": str(code), "TAPEFLOW_WAREHOUSE": f"chdb://{work}/wh"}
    command = [sys.executable, "-m", "tapeflow.cli", "run", "--brokers", brokers, "--prefix",
               f"eotb{uuid.uuid4().hex[:8]}.", "--feed", "replay", "--path", str(path), "--run-id", "bench",
               "--no-dashboard", "--progress-interval", "5", "--speed", str(speed)]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    feed_done: list[float] = []

    def watch() -> None:
        for line in process.stderr:
            if line.startswith("feed done") and not feed_done:
                feed_done.append(time.monotonic())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = process.stdout.read()
    process.wait(600)
    ended = time.monotonic()
    watcher.join(5)
    if process.returncode != 0 or not feed_done:
        raise SystemExit(f"run failed ({process.returncode}) in {work}")
    bars = re.search(r"md_bars\s+(\d+)", out)
    return {"total_s": ended - started, "after_feed_s": ended - feed_done[0], "md_bars": int(bars.group(1))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--file", type=Path, default=FUTURES)
    parser.add_argument("--speed", type=float, default=0.0,
                        help="pace the replay (N x real time): the stages are caught up when the tape ends")
    parser.add_argument("--compare", type=Path, help="another tapeflow checkout, run alternately with this one")
    args = parser.parse_args()
    codes = {"this": REPO, **({"compare": args.compare} if args.compare else {})}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
    for _ in range(args.runs):
        for name, code in codes.items():
            result = one_run(code, args.brokers, args.file, args.speed)
            results[name].append(result)
            print(f"{name:8} feed done -> run ended {result['after_feed_s']:6.2f} s | whole run "
                  f"{result['total_s']:6.2f} s | md_bars {result['md_bars']:,}", flush=True)
    for name, runs in results.items():
        best = min(r["after_feed_s"] for r in runs)
        print(f"{name}: best feed done -> run ended {best:.2f} s over {len(runs)} runs ({codes[name]})")


if __name__ == "__main__":
    main()
