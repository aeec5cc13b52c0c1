"""Strategies from the command line: ``--strategy SPEC[=CAPITAL]`` and ``--strategy-config FILE``.

The one place a run turns strategy options into strategy objects: the embedded run, the split
run's signals stage and its trading stages all call :func:`load_strategies`, so every topology
trades the same strategies with the same capital.

A SPEC is ``baseline``, ``lightgbm`` (the built-in strategies) or ``package.module:ClassName``, a
class importable from the environment or the current directory that meets the plug-in protocol
(``strategies/base.py``). ``=CAPITAL`` is the fraction of the account's capital the strategy trades
(in (0, 1]; the fractions of one run sum to at most 1); a single strategy without one trades all of
it, several strategies must each state theirs. ``--strategy-config`` is given once per
``--strategy``, in the same order, or not at all; ``-`` stands for "the defaults" in that list.

``external:NAME`` is a strategy that runs outside tapeflow (e.g. a Quix Streams app, see
``examples/quix_strategy.py``) and publishes its own Signals under ``NAME`` to the split run's
``signals`` topic: nothing is built for it here; the desk sizes, limits and values it by ``NAME``
like any other. Its signals number their cross-sections themselves (``section_seq``), so a run
trades one external strategy alone, and takes no ``--strategy-config`` for it (its config is its app's).

Everything that can be wrong with a spec fails here, before anything runs, with a
:class:`StrategyLoadError` that names the spec and what is wrong: a module that does not import,
a missing class, a class that does not meet the protocol, config keys it does not know, a config
file that is not TOML, two strategies with one name, capitals that do not add up.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import BaseModel, ValidationError

from strategies.base import GROSS_TOLERANCE, Strategy, StrategyContext

EXTERNAL = "external:"
# the name goes into every client_order_id and keys the ledger: keep it to plain characters
_EXTERNAL_NAME = re.compile(r"[A-Za-z0-9_.]+")
BUILT_IN = {
    "baseline": "strategies.baseline:BaselineStrategy",
    "lightgbm": "strategies.lightgbm_strategy:LightGBMStrategy",
}
NO_CONFIG = "-"


class StrategyLoadError(ValueError):
    """A strategy spec, its config or the set of them cannot be used; the message says why."""


@dataclass(frozen=True)
class StrategySpec:
    """One ``--strategy`` option, parsed: where the class is, its capital fraction (None: not given)
    and its config file (None: defaults)."""

    target: str  # "package.module:ClassName"; an external strategy's NAME
    capital: float | None = None
    config_path: Path | None = None
    text: str = ""  # as given, for messages
    external: bool = False  # its signals come from outside the run (``external:NAME``)

    @classmethod
    def parse(cls, text: str, config_path: str | Path | None = None) -> "StrategySpec":
        spec, capital = text.strip(), None
        if "=" in spec:
            spec, _, weight = spec.rpartition("=")
            try:
                capital = float(weight)
            except ValueError:
                raise StrategyLoadError(f"--strategy {text!r}: capital {weight!r} is not a number "
                                        "(SPEC=FRACTION, e.g. baseline=0.5)") from None
            if not (math.isfinite(capital) and 0.0 < capital <= 1.0):
                raise StrategyLoadError(f"--strategy {text!r}: capital must be a fraction in (0, 1], got {capital:g}")
        path = None if config_path in (None, "", NO_CONFIG) else Path(config_path)
        if spec.startswith(EXTERNAL):
            name = spec[len(EXTERNAL):]
            if not _EXTERNAL_NAME.fullmatch(name):
                raise StrategyLoadError(f"--strategy {text!r}: external:NAME needs the name its app publishes signals "
                                        "under (letters, digits, '_' and '.')")
            if path is not None:
                raise StrategyLoadError(f"--strategy {text!r} runs outside tapeflow: its config is its app's own, "
                                        f"so --strategy-config {path} would change nothing (give '{NO_CONFIG}')")
            return cls(name, capital, None, text, external=True)
        target = BUILT_IN.get(spec, spec)
        module, _, name = target.partition(":")
        if not module or not name or not name.isidentifier():
            raise StrategyLoadError(f"--strategy {text!r}: expected baseline, lightgbm, package.module:ClassName "
                                    "or external:NAME")
        return cls(target, capital, path, text)


@dataclass(frozen=True)
class LoadedStrategies:
    """The run's strategies, in the order given, and each one's capital fraction by name."""

    strategies: tuple[Strategy, ...]
    capital: Mapping[str, float]
    external: tuple[str, ...] = ()  # names of the strategies whose signals come from outside the run

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.strategies) + self.external


def parse_specs(specs: Sequence[str], config_paths: Sequence[str | Path | None] = ()) -> tuple[StrategySpec, ...]:
    """The options as given: ``config_paths`` is empty or pairs with ``specs`` one to one."""
    specs = list(specs) or ["baseline"]
    paths = list(config_paths)
    if paths and len(paths) != len(specs):
        raise StrategyLoadError(f"{len(paths)} --strategy-config for {len(specs)} --strategy: give one per "
                                f"--strategy, in the same order ('{NO_CONFIG}' for the defaults), or none")
    parsed = tuple(StrategySpec.parse(s, paths[i] if paths else None) for i, s in enumerate(specs))
    if any(p.external for p in parsed) and len(parsed) > 1:
        raise StrategyLoadError(
            f"--strategy {' '.join(p.text for p in parsed)}: an external strategy's app numbers its own cross-sections "
            "(Signal.section_seq), which the desk reassembles in order, so a run trades one external strategy alone: "
            "give it as the only --strategy")
    return parsed


def external_strategies(specs: Sequence[str]) -> tuple[str, ...]:
    """The names of the ``external:NAME`` specs among ``specs`` (which may be unchecked)."""
    names = []
    for spec in specs:
        spec = spec.strip().rpartition("=")[0] if "=" in spec else spec.strip()
        if spec.startswith(EXTERNAL):
            names.append(spec[len(EXTERNAL):])
    return tuple(names)


def load_strategies(
    specs: Sequence[str],
    config_paths: Sequence[str | Path | None] = (),
    registry: str | Path = "data/models",
    model: str = "lightgbm",
    account: str = "paper",
) -> LoadedStrategies:
    """Build every strategy of a run from its options; raises :class:`StrategyLoadError`."""
    parsed = parse_specs(specs, config_paths)
    context = StrategyContext(account=account, model_registry=str(registry), model_name=model)
    strategies = tuple(build_strategy(spec, context) for spec in parsed if not spec.external)
    external = tuple(spec.target for spec in parsed if spec.external)
    names = [s.name for s in strategies] + list(external)
    for name in names:
        if names.count(name) > 1:
            raise StrategyLoadError(f"two strategies are named {name!r}: the name is part of every order id and "
                                    "keys the ledger, so give each its own (config key `name`)")
    feature_sets = {s.feature_set for s in strategies}
    if len(feature_sets) > 1:
        raise StrategyLoadError(f"the strategies read different feature sets ({', '.join(sorted(feature_sets))}); "
                                "one run computes one")
    return LoadedStrategies(strategies, _capital(parsed, names), external)


def _capital(parsed: Sequence[StrategySpec], names: Sequence[str]) -> dict[str, float]:
    if len(parsed) == 1:
        return {names[0]: parsed[0].capital if parsed[0].capital is not None else 1.0}
    missing = [s.text for s in parsed if s.capital is None]
    if missing:
        raise StrategyLoadError(f"several strategies: give each its capital fraction (SPEC=FRACTION); "
                                f"missing for {', '.join(missing)}")
    total = math.fsum(s.capital for s in parsed)
    if total > 1.0 + GROSS_TOLERANCE:
        raise StrategyLoadError(f"the capital fractions sum to {total:g}, more than the account's capital (1)")
    return {name: spec.capital for name, spec in zip(names, parsed)}


def build_strategy(spec: StrategySpec, context: StrategyContext) -> Strategy:
    """Import, configure, construct and check one strategy."""
    cls = _import(spec)
    config = _config(spec, cls)
    try:
        if hasattr(cls, "from_config"):
            strategy = cls.from_config(config, context)
        elif config is not None:
            strategy = cls(config)
        else:
            strategy = cls()
    except StrategyLoadError:
        raise
    except Exception as exc:  # the strategy's own reason (a missing model, a bad parameter)
        raise StrategyLoadError(f"--strategy {spec.text!r}: {type(exc).__name__}: {exc}") from exc
    problems = protocol_problems(strategy)
    if problems:
        raise StrategyLoadError(f"--strategy {spec.text!r}: {spec.target} does not meet the strategy protocol "
                                f"(strategies/base.py): {'; '.join(problems)}")
    return strategy


def protocol_problems(strategy: Any) -> list[str]:
    """What ``strategy`` lacks of the plug-in protocol; empty when it meets it."""
    problems = []
    for method in ("score", "target_weights"):
        if not callable(getattr(strategy, method, None)):
            problems.append(f"no method {method}()")
    for attribute in ("name", "version", "feature_set"):
        try:
            value = getattr(strategy, attribute)
        except AttributeError:
            problems.append(f"no attribute {attribute!r}")
            continue
        except Exception as exc:
            problems.append(f"{attribute} raised {type(exc).__name__}: {exc}")
            continue
        if not isinstance(value, str) or not value:
            problems.append(f"{attribute} must be a non-empty string, got {value!r}")
    model_version = getattr(strategy, "model_version", "")
    if not isinstance(model_version, str):
        problems.append(f"model_version must be a string, got {model_version!r}")
    if not problems:
        try:
            pickle.dumps(strategy)
        except Exception as exc:  # its state goes into every recovery snapshot of the signals stage
            problems.append(f"it does not pickle ({type(exc).__name__}: {exc}); its state goes into the "
                            "recovery snapshots")
    return problems


def _import(spec: StrategySpec) -> type:
    module_name, _, class_name = spec.target.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:  # a user's own module beside their data, as `python -m` would find it
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise StrategyLoadError(f"--strategy {spec.text!r}: no module {exc.name!r} (looked in the environment and "
                                f"in {cwd})") from exc
    except Exception as exc:
        raise StrategyLoadError(f"--strategy {spec.text!r}: importing {module_name} failed: "
                                f"{type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module.__name__)
        raise StrategyLoadError(f"--strategy {spec.text!r}: module {module_name} has no {class_name!r} "
                                f"(its classes: {', '.join(found) or 'none'})")
    if not isinstance(cls, type):
        raise StrategyLoadError(f"--strategy {spec.text!r}: {spec.target} is a {type(cls).__name__}, not a class")
    return cls


def _config(spec: StrategySpec, cls: type) -> BaseModel | None:
    model = getattr(cls, "Config", None)
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise StrategyLoadError(f"--strategy {spec.text!r}: {cls.__name__}.Config must be a pydantic model")
    values: dict[str, Any] = {}
    if spec.config_path is not None:
        if model is None:
            raise StrategyLoadError(f"--strategy {spec.text!r}: {cls.__name__} takes no config (it declares no Config "
                                    f"model), yet --strategy-config {spec.config_path} was given")
        try:
            values = tomllib.loads(spec.config_path.read_text())
        except FileNotFoundError:
            raise StrategyLoadError(f"--strategy-config {spec.config_path}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise StrategyLoadError(f"--strategy-config {spec.config_path}: not TOML: {exc}") from None
    if model is None:
        return None
    try:
        return model(**values)
    except ValidationError as exc:
        known = ", ".join(model.model_fields)
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise StrategyLoadError(f"--strategy-config {spec.config_path} for {spec.text!r}: {errors} "
                                f"(keys of {cls.__name__}.Config: {known})") from None


def strategy_options(specs: Sequence[str], config_paths: Sequence[str | Path | None] = (),
                     registry: str | Path | None = None, model: str | None = None) -> tuple[str, ...]:
    """The command-line options that make a stage process (``tapeflow flow STAGE``) load the same
    strategies; config paths made absolute, as the stage may run elsewhere."""
    out: list[str] = []
    for spec in specs:
        out += ["--strategy", spec]
    for path in config_paths:
        out += ["--strategy-config", NO_CONFIG if path in (None, "", NO_CONFIG) else str(Path(path).resolve())]
    if registry is not None:
        out += ["--registry", str(Path(registry).resolve())]
    if model is not None:
        out += ["--model", model]
    return tuple(out)
