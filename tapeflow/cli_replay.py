"""``tapeflow run --feed replay``: a user's own tick files from the command line.

Each ``--path`` is a file, a directory (its tick files, non-recursive) or a glob, optionally
followed by ``@SYMBOL`` to name the symbol of every row it holds (else a symbol column is mapped).
Every file gets its own mapping (see :func:`feeds.replay_columns.resolve_mapping`: ``--preset`` >
``--mapping`` file > a preset known by file name > detection, with ``--columns`` laid on top); one
file replays as :class:`feeds.replay.ReplayFeed`, several merge in event time
(:class:`feeds.replay_merge.MergedReplayFeed`). The mapping of every file is printed before the run.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from feeds.replay import ReplayFeed, TICK_FILE_SUFFIXES, file_suffix
from feeds.replay_columns import describe_mapping, load_mapping_file, parse_columns_spec, resolve_mapping
from feeds.replay_merge import MergedReplayFeed

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class ReplayPath:
    file: Path
    symbol: str | None


def split_symbol(spec: str) -> tuple[str, str | None]:
    """``"trades.csv@BTCUSDT"`` -> ("trades.csv", "BTCUSDT"); an ``@`` that is part of an existing
    file's name, or followed by a path separator, is not a symbol."""
    head, sep, tail = spec.rpartition("@")
    if not sep or not head or not tail or "/" in tail or Path(spec).exists():
        return spec, None
    return head, tail


def expand_paths(specs: list[str]) -> list[ReplayPath]:
    """Every file the ``--path`` values name, in the order given (a directory's or glob's files sorted
    by name). A value that names nothing raises FileNotFoundError naming it."""
    files: list[ReplayPath] = []
    for spec in specs:
        where, symbol = split_symbol(spec)
        path = Path(where)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and file_suffix(p) in TICK_FILE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{where}: no tick files ({', '.join(TICK_FILE_SUFFIXES)}) in this directory")
        elif _GLOB_CHARS & set(where):
            found = sorted(Path(p) for p in glob.glob(where) if Path(p).is_file())
            if not found:
                raise FileNotFoundError(f"{where}: no file matches this pattern")
        elif path.is_file():
            found = [path]
        else:
            raise FileNotFoundError(f"replay file not found: {where}")
        files += [ReplayPath(f, symbol) for f in found]
    return files


def replay_feed(
    paths: list[str], *, columns: str | None = None, mapping: Path | None = None, preset: str | None = None,
    speed: float = 0.0,
) -> tuple[ReplayFeed | MergedReplayFeed, list[str]]:
    """The feed for ``tapeflow run --feed replay`` and one line per file saying how it is read.

    Raises ValueError (a file that cannot be mapped, a bad ``--columns`` item, an unknown preset) or
    FileNotFoundError, each naming the file, before anything runs."""
    if not paths:
        raise ValueError("--feed replay needs --path (a file, a directory or a glob; PATH@SYMBOL names its symbol)")
    if preset is not None and mapping is not None:
        raise ValueError("give either --preset or --mapping, not both (--columns may refine either)")
    overrides = parse_columns_spec(columns) if columns else None
    mapping_file = load_mapping_file(mapping) if mapping is not None else None
    feeds, lines = [], []
    for item in expand_paths(paths):
        resolved = resolve_mapping(item.file, preset=preset, mapping_file=mapping_file, overrides=overrides,
                                   symbol=item.symbol)
        feeds.append(ReplayFeed(item.file, resolved.mapping, speed=speed, symbol=item.symbol))
        symbol = f" as {item.symbol}" if item.symbol else ""
        lines.append(f"replay {item.file}{symbol}: {describe_mapping(resolved.mapping)} [{resolved.origin}]")
    feed = feeds[0] if len(feeds) == 1 else MergedReplayFeed(feeds, speed=speed)
    if len(feeds) > 1:
        lines.append(f"merging {len(feeds)} files in event time ({', '.join(feed.market_streams)})")
    return feed, lines


def bar_feed(paths: list[str], speed: float = 0.0):
    """``--feed bars``: every file the ``--path`` values name (PATH@SYMBOL as for ticks) as one
    :class:`feeds.bar_replay.BarFileFeed`."""
    from feeds.bar_replay import BarFileFeed

    if not paths:
        raise ValueError("--feed bars needs --path (a bar file, a directory or a glob; PATH@SYMBOL names its symbol)")
    return BarFileFeed([(item.file, item.symbol) for item in expand_paths(paths)], speed=speed)


# What a bar replay refuses, and why (an option is never silently ignored).
_NOT_WITH_BARS = {
    "brokers": "--feed bars runs embedded only: the split topology's stages start from md.raw ticks",
    "max_ticks": "--max-ticks counts ticks and a bar replay has none: use --duration",
    "symbols": "--symbols: a bar replay trades every symbol of its files (name them with PATH@SYMBOL)",
    "rate": "--rate paces the synthetic feed; pace a bar replay with --speed",
    "columns": "--columns maps tick files; bar columns are detected by name (timestamp, open, high, low, close, volume)",
    "mapping": "--mapping maps tick files; bar columns are detected by name",
    "preset": "--preset names a tick-file layout",
    "alpaca": "--venue alpaca trades live prices; a bar replay fills on the simulated venue",
}


def run_feed(kind: str, paths: list[str] | None, columns: str | None, mapping: Path | None, preset: str | None,
             options: dict, say, run: dict | None = None) -> object:
    """The feed ``tapeflow run`` replays: ``--feed replay`` through :func:`replay_feed` (its lines
    go to ``say``), ``--feed bars`` through :func:`bar_feed`, any other kind through
    :func:`feeds.make_feed` with ``options``. ``run``: the run's other options (``brokers``,
    ``max_ticks``, ``venue``) that a bar replay refuses. The mapping options belong to the tick
    replay: with another feed they are refused, not ignored."""
    from feeds import make_feed

    if kind == "bars":
        given = {**(run or {}), "symbols": options.get("symbols"), "rate": options.get("rate"), "columns": columns,
                 "mapping": mapping, "preset": preset}
        given["alpaca"] = given.pop("venue", None) == "alpaca" or None
        refused = [reason for name, reason in _NOT_WITH_BARS.items() if given.get(name) is not None]
        if refused:
            raise ValueError("; ".join(refused))
        feed = bar_feed(paths or [], speed=options.get("speed") or 0.0)
        for line in feed.lines:
            say(line)
        say(f"features, signals and the desk's bar clock at the files' interval: {feed.interval}")
        return feed
    if kind == "replay":
        if options.get("rate") is not None:
            raise ValueError("rate paces the synthetic feed; pace a replay with --speed (N x real time)")
        feed, lines = replay_feed(paths or [], columns=columns, mapping=mapping, preset=preset,
                                  speed=options.get("speed") or 0.0)
        for line in lines:
            say(line)
        return feed
    given = [name for name, value in (("--columns", columns), ("--mapping", mapping), ("--preset", preset)) if value]
    if given:
        raise ValueError(f"{', '.join(given)} map the columns of a replayed file and need --feed replay")
    if paths and len(paths) > 1:
        raise ValueError(f"several --path values are for --feed replay, not --feed {kind}")
    return make_feed(kind, **{**options, "path": Path(paths[0]) if paths else None})
