"""Consumer lag of the split topology's stages, for the System page.

Bytewax stages keep their Kafka offsets in their recovery stores, not in consumer groups, so the
lag is read the way ``tapeflow lag`` reads it (:mod:`topics.lag`): each stage's recovery offsets
against the topics' end offsets. ``tapeflow run --brokers`` keeps one recovery directory per stage
under ``data/recovery/<prefix or default>/<run id>/<stage>`` (every run's stages are listed, as ``<run id>/<stage>``).
A group sink (``tapeflow flow sink --members N``) is a consumer group: its committed offsets, under
the group's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RECOVERY_ROOT = Path("data/recovery")


def stage_dirs(root: Path = RECOVERY_ROOT) -> dict[str, Path]:
    """``stage -> recovery dir`` for every directory under ``root`` holding a Bytewax store."""
    dirs: dict[str, Path] = {}
    for store in sorted(root.glob("**/part-*.sqlite3")):
        directory = store.parent
        name = directory.name if directory.parent == root else f"{directory.parent.name}/{directory.name}"
        dirs[name] = directory
    return dirs


def consumer_lag(brokers: str, timeout_s: float = 2.0, root: Path = RECOVERY_ROOT) -> list[dict[str, Any]]:
    """One row per (stage, topic): messages not yet read, summed over partitions."""
    from topics.lag import sink_group_lag, stage_lag

    totals: dict[tuple[str, str], int] = {}
    for row in stage_lag(brokers, stage_dirs(root), timeout_s) + sink_group_lag(brokers, timeout_s):
        key = (row.stage, row.topic)
        totals[key] = totals.get(key, 0) + row.lag
    return [{"group": stage, "topic": topic, "lag": n} for (stage, topic), n in sorted(totals.items())]
