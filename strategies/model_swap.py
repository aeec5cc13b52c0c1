"""Hot reload of a serving model: activation with checks, a shadow check, swaps only between bars.

A :class:`ModelSlot` holds the model a :class:`strategies.lightgbm_strategy.LightGBMStrategy`
scores with. ``activate(version)`` runs every check *at once*, while the current model keeps
serving:

1. load from the registry (a missing or incomplete version is refused);
2. checksum (a modified model or metadata file is refused);
3. the promotion gate (feature set / column order of the running feature stage, IC floor);
4. optional shadow check: the candidate and the current model predict the last ``shadow_window``
   cross-sections the strategy scored; a Pearson correlation below ``shadow_min_corr`` is refused
   (a model that disagrees that much with the one it replaces is more likely broken than better).
   With fewer than ``shadow_min_rows`` remembered rows the check is skipped, and the record says so.

An accepted model is *staged*: it takes effect at the start of the next cross-section the strategy
scores (``model_for``), so every bar is scored by exactly one model, and none twice or never. A
refused one changes nothing. Every decision and every swap leaves a ``ControlCommand``-shaped record
(``activate_model`` when accepted, ``alert`` when refused or when a staged swap takes effect; name =
the version, detail = the reason, value = the candidate's out-of-sample IC) in ``records``, for the
pipeline to land in the warehouse ``control`` table (``take_records()`` drains them).

Everything here pickles (Bytewax recovery snapshots the signals state): models pickle as their
text, the shadow memory as numpy arrays, and the registry as its path.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas import ControlCommand, ControlKind, now_ns
from strategies.registry import GatePolicy, ModelRegistry, RegistryError


SLOT_RECORD_PREFIX = "ctl:model:"  # the ids of a slot's own records; an operator's command never has one


def is_slot_record(command: ControlCommand) -> bool:
    """A record a :class:`ModelSlot` wrote about its own decision, not a command to apply. In the split
    topology these go out on the ``control`` topic the signals stage also reads: applying an accepted
    ``activate_model`` record again would re-stage the model and write another record, forever."""
    return command.id.startswith(SLOT_RECORD_PREFIX)


@dataclass(frozen=True)
class SwapPolicy:
    gate: GatePolicy = GatePolicy()
    shadow: bool = True
    shadow_window: int = 32  # cross-sections remembered for the shadow check
    shadow_min_rows: int = 16
    shadow_min_corr: float = 0.2


@dataclass(frozen=True)
class SwapRecord:
    """One model change that took effect: from which version to which, at which bar time."""

    previous: str
    version: str
    bar_end: int


class ModelSlot:
    """The active model of one serving strategy, plus at most one staged successor."""

    def __init__(
        self,
        model,
        registry: ModelRegistry | Path | str | None = None,
        model_name: str = "lightgbm",
        policy: SwapPolicy = SwapPolicy(),
        target: str = "global",
    ) -> None:
        self.active = model
        self.registry = ModelRegistry(registry) if isinstance(registry, (str, Path)) else registry
        self.model_name = model_name
        self.policy = policy
        self.target = target
        self.staged = None
        self.swaps: list[SwapRecord] = []
        self.records: list[ControlCommand] = []
        self.scored_bars = 0
        self._recent: deque[np.ndarray] = deque(maxlen=policy.shadow_window)
        self._last_bar_end: int | None = None
        self._sequence = 0

    # ------------------------------------------------------------------ serving

    def model_for(self, bar_end: int, matrix: np.ndarray):
        """The model that scores the cross-section at ``bar_end``; a staged model takes over here."""
        if self.staged is not None:
            previous, self.active, self.staged = self.active, self.staged, None
            self.swaps.append(SwapRecord(previous.version, self.active.version, bar_end))
            self._record(ControlKind.ALERT, self.active.version, "system",
                         f"model {self.active.version} in effect from bar_end={bar_end} (replaces {previous.version})",
                         bar_end)
        self._recent.append(matrix)
        self._last_bar_end = bar_end
        self.scored_bars += 1
        return self.active

    # ------------------------------------------------------------------ activation

    def activate(self, version: str, issued_by: str = "system") -> ControlCommand:
        """Check ``version`` and stage it for the next cross-section, or refuse it; returns the record."""
        if self.registry is None:
            return self._refuse(version, issued_by, "no model registry configured for this strategy")
        if version == self.active.version and self.staged is None:
            return self._refuse(version, issued_by, f"{version} is already active")
        try:
            candidate = self.registry.check(self.model_name, version, self.policy.gate)
        except RegistryError as exc:
            return self._refuse(version, issued_by, str(exc))
        try:
            model = candidate.serving_model()
            model.booster  # parse now: a model that cannot load must not wait for the next bar to fail
        except Exception as exc:  # LightGBM raises its own error types for an unreadable model
            return self._refuse(version, issued_by, f"model {version} does not load: {exc}")
        shadow_note = self._shadow_check(model)
        if shadow_note.startswith("refused"):
            return self._refuse(version, issued_by, shadow_note)
        self.staged = model
        ic = candidate.oos_ic or 0.0
        return self._record(
            ControlKind.ACTIVATE_MODEL, version, issued_by,
            f"accepted {version} (replacing {self.active.version}) from the next cross-section; "
            f"out-of-sample IC {ic:.4f}; {shadow_note}",
            value=ic,
        )

    def on_control(self, command: ControlCommand) -> list[ControlCommand]:
        """A control command for this stage: ``activate_model`` with the version as ``name`` (the
        slot's own records are not commands: see :func:`is_slot_record`)."""
        if (command.kind != ControlKind.ACTIVATE_MODEL or command.target not in ("global", self.target)
                or is_slot_record(command)):
            return []
        return [self.activate(command.name, command.issued_by)]

    def take_records(self) -> list[ControlCommand]:
        out, self.records = self.records, []
        return out

    # ------------------------------------------------------------------ internals

    def _shadow_check(self, candidate) -> str:
        if not self.policy.shadow:
            return "shadow check off"
        rows = int(sum(m.shape[0] for m in self._recent))
        if rows < self.policy.shadow_min_rows:
            return f"shadow check skipped ({rows} recent rows < {self.policy.shadow_min_rows})"
        matrix = np.vstack(list(self._recent))
        current, proposed = self.active.predict(matrix), candidate.predict(matrix)
        if np.std(current) == 0.0 or np.std(proposed) == 0.0:
            corr = 0.0
        else:
            corr = float(np.corrcoef(current, proposed)[0, 1])
        if not corr >= self.policy.shadow_min_corr:
            return (f"refused by shadow check: predictions on the last {len(self._recent)} cross-sections "
                    f"({rows} rows) correlate {corr:.3f} with {self.active.version}'s, "
                    f"below {self.policy.shadow_min_corr:.3f}")
        return f"shadow corr {corr:.3f} over {rows} rows"

    def _refuse(self, version: str, issued_by: str, reason: str) -> ControlCommand:
        return self._record(ControlKind.ALERT, version, issued_by,
                            f"activation of {version} refused, {self.active.version} keeps serving: {reason}")

    def _record(self, kind: ControlKind, version: str, issued_by: str, detail: str,
                bar_end: int | None = None, value: float = 0.0) -> ControlCommand:
        self._sequence += 1
        ts = bar_end if bar_end is not None else (self._last_bar_end if self._last_bar_end is not None else now_ns())
        record = ControlCommand(
            id=f"{SLOT_RECORD_PREFIX}{self.model_name}:{version}:{ts}:{self._sequence}",
            ts_event=ts,
            ts_ingest=now_ns(),
            target=self.target,
            kind=kind,
            name=version,
            value=value,
            issued_by=issued_by or "system",
            detail=detail,
        )
        self.records.append(record)
        return record
