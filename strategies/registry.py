"""The model registry: versioned LightGBM models on disk, checksummed, with an activation history.

Layout (one directory per model name)::

    <root>/<name>/v1/model.txt          LightGBM text format
    <root>/<name>/v1/metadata.json      feature set + exact column order, training window, horizon,
                                        metrics per fold and overall, data hash, library versions, ...
    <root>/<name>/v1/CHECKSUM           sha256(model.txt bytes + metadata.json bytes), hex
    <root>/<name>/ACTIVE                the active version ("v2"), absent until one is activated
    <root>/<name>/activations.jsonl     every activation and rollback, oldest first

Versions are ``v1, v2, ...``: ordered by number, and never reused (a registered version is
immutable; its checksum is verified on every load, so a hand-edited file is a loud error rather
than a silently different model). A version is written into a temporary directory and renamed into
place, so a reader never sees half a model.

The promotion gate refuses a model whose feature set or column order differs from the running
feature stage's, or whose out-of-sample IC is below a floor (default 0.02); the refusal names the
reason. Rollback re-activates the version that was active before the current one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from schemas.feature_set import FEATURE_SET_V1, FEATURE_SET_VERSION

MODEL_FILE = "model.txt"
METADATA_FILE = "metadata.json"
CHECKSUM_FILE = "CHECKSUM"
ACTIVE_FILE = "ACTIVE"
HISTORY_FILE = "activations.jsonl"
DEFAULT_IC_FLOOR = 0.02
_VERSION = re.compile(r"^v(\d+)$")


class RegistryError(Exception):
    """A registry operation failed; the message names the model, the version and what to do."""


class ChecksumMismatch(RegistryError):
    pass


class ModelRefused(RegistryError):
    """The promotion gate refused a model; ``reasons`` are the failed checks."""

    def __init__(self, name: str, version: str, reasons: list[str]):
        self.reasons = reasons
        super().__init__(f"model {name} {version} refused: " + "; ".join(reasons))


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    model_text: str
    metadata: dict[str, Any]

    @property
    def oos_ic(self) -> float | None:
        return (self.metadata.get("metrics") or {}).get("overall", {}).get("ic")

    def serving_model(self):
        from strategies.lightgbm_strategy import ServingModel

        return ServingModel(
            self.model_text,
            self.version,
            tuple(self.metadata["feature_names"]),
            float(self.metadata.get("prediction_scale", 1.0)),
            self.metadata["feature_set"],
        )


@dataclass(frozen=True)
class GatePolicy:
    ic_floor: float = DEFAULT_IC_FLOOR
    feature_set: str = FEATURE_SET_VERSION
    feature_names: tuple[str, ...] = FEATURE_SET_V1


def gate_reasons(metadata: dict[str, Any], policy: GatePolicy = GatePolicy()) -> list[str]:
    """Why a model may not serve the running feature stage; empty when it may."""
    reasons = []
    if metadata.get("feature_set") != policy.feature_set:
        reasons.append(
            f"feature_set_mismatch: model uses feature set {metadata.get('feature_set')!r}, "
            f"the feature stage computes {policy.feature_set!r}"
        )
    elif tuple(metadata.get("feature_names", ())) != policy.feature_names:
        reasons.append(
            f"feature_columns_mismatch: model columns {list(metadata.get('feature_names', ()))} differ from "
            f"the feature stage's {list(policy.feature_names)}"
        )
    ic = (metadata.get("metrics") or {}).get("overall", {}).get("ic")
    if ic is None or not isinstance(ic, (int, float)) or ic != ic:
        reasons.append("ic_missing: the model has no out-of-sample IC; retrain with walk-forward evaluation")
    elif ic < policy.ic_floor:
        reasons.append(f"ic_below_floor: out-of-sample IC {ic:.4f} < floor {policy.ic_floor:.4f}")
    return reasons


def _checksum(model_bytes: bytes, metadata_bytes: bytes) -> str:
    return hashlib.sha256(model_bytes + metadata_bytes).hexdigest()


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ModelRegistry:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    # ------------------------------------------------------------------ versions

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, name: str) -> list[str]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [(int(m.group(1)), p.name) for p in folder.iterdir() if p.is_dir() and (m := _VERSION.match(p.name))]
        return [v for _, v in sorted(found)]

    def register(self, name: str, model_text: str, metadata: dict[str, Any]) -> ModelVersion:
        """Write a new version (the next ``vN``); returns it as loaded back."""
        if not name or "/" in name or name.startswith("."):
            raise RegistryError(f"invalid model name {name!r}: use a plain directory name such as 'lightgbm'")
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        existing = self.versions(name)
        number = int(existing[-1][1:]) + 1 if existing else 1
        version = f"v{number}"
        metadata = {**metadata, "name": name, "version": version, "created_at": metadata.get("created_at") or _now_iso()}
        model_bytes = model_text.encode()
        metadata_bytes = json.dumps(metadata, indent=2, sort_keys=True, default=float).encode()
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder))
        try:
            (staging / MODEL_FILE).write_bytes(model_bytes)
            (staging / METADATA_FILE).write_bytes(metadata_bytes)
            (staging / CHECKSUM_FILE).write_text(_checksum(model_bytes, metadata_bytes) + "\n")
            os.rename(staging, folder / version)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise RegistryError(f"could not register {name} {version} under {folder}: {exc}") from exc
        return self.load(name, version)

    def load(self, name: str, version: str) -> ModelVersion:
        """A version with its checksum verified; raises RegistryError / ChecksumMismatch."""
        path = self.root / name / version
        if not path.is_dir():
            known = ", ".join(self.versions(name)) or "none"
            raise RegistryError(f"model {name} has no version {version!r} in {self.root} (versions: {known})")
        try:
            model_bytes = (path / MODEL_FILE).read_bytes()
            metadata_bytes = (path / METADATA_FILE).read_bytes()
            recorded = (path / CHECKSUM_FILE).read_text().strip()
        except OSError as exc:
            raise RegistryError(f"model {name} {version} is incomplete at {path}: {exc}") from exc
        actual = _checksum(model_bytes, metadata_bytes)
        if actual != recorded:
            raise ChecksumMismatch(
                f"model {name} {version} at {path} fails its checksum (recorded {recorded[:12]}..., "
                f"actual {actual[:12]}...): the model or metadata was modified after registration; "
                "register a new version instead of editing one"
            )
        return ModelVersion(name, version, path, model_bytes.decode(), json.loads(metadata_bytes))

    # ------------------------------------------------------------------ activation

    def active(self, name: str) -> str | None:
        pointer = self.root / name / ACTIVE_FILE
        return pointer.read_text().strip() or None if pointer.exists() else None

    def history(self, name: str) -> list[dict[str, Any]]:
        path = self.root / name / HISTORY_FILE
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def check(self, name: str, version: str, policy: GatePolicy = GatePolicy()) -> ModelVersion:
        """Load (checksum) and gate a version; raises ModelRefused with the reasons."""
        model = self.load(name, version)
        reasons = gate_reasons(model.metadata, policy)
        if reasons:
            raise ModelRefused(name, version, reasons)
        return model

    def activate(self, name: str, version: str, issued_by: str = "system", policy: GatePolicy = GatePolicy(),
                 action: str = "activate") -> ModelVersion:
        model = self.check(name, version, policy)
        previous = self.active(name)
        self._write_pointer(name, version)
        entry = {"at": _now_iso(), "action": action, "version": version, "previous": previous, "issued_by": issued_by}
        with open(self.root / name / HISTORY_FILE, "a") as history:
            history.write(json.dumps(entry) + "\n")
        return model

    def rollback(self, name: str, issued_by: str = "system", policy: GatePolicy = GatePolicy()) -> ModelVersion:
        """Re-activate the version that was active before the current one."""
        current = self.active(name)
        if current is None:
            raise RegistryError(f"model {name} has no active version to roll back from")
        stack = self.activation_stack(name)
        if len(stack) < 2:
            raise RegistryError(f"model {name}: nothing to roll back to (no version was active before {current})")
        return self.activate(name, stack[-2], issued_by, policy, action="rollback")

    def activation_stack(self, name: str) -> list[str]:
        """Versions in activation order as rollbacks unwind them: an activation pushes, a rollback pops."""
        stack: list[str] = []
        for entry in self.history(name):
            if entry["action"] == "rollback":
                if stack:
                    stack.pop()
            else:
                stack.append(entry["version"])
        return stack

    def _write_pointer(self, name: str, version: str) -> None:
        folder = self.root / name
        tmp = folder / f".{ACTIVE_FILE}.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, folder / ACTIVE_FILE)
