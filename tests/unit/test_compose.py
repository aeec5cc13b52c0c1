"""The docker-compose stack, checked statically (no Docker engine): every image pinned, every command
a real tapeflow subcommand with options the CLI accepts, every variable a known setting or
documented, every topic in the catalog, every dependency and volume defined.

The checks are small functions returning a list of problems; the last tests feed them a broken
snippet so each is seen to fail.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, Iterator

import pytest
import typer
import yaml

from flows.split import SEPARATE_TRADING, STAGES
from config.alpaca_settings import AlpacaSettings
from tapeflow.cli import app
from config.settings import Settings
from topics.catalog import BY_NAME

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

# Third-party images configure themselves from their own variables; these are theirs, not tapeflow's.
THIRD_PARTY_ENV = {
    "apache/kafka": (re.compile(r"^KAFKA_[A-Z0-9_]+$"), re.compile(r"^CLUSTER_ID$")),
    "clickhouse/clickhouse-server": (
        re.compile(r"^CLICKHOUSE_(USER|PASSWORD|DB|DEFAULT_ACCESS_MANAGEMENT|SKIP_USER_SETUP)$"),
    ),
}
# The positional arguments that select behaviour, and their allowed values.
ARGUMENT_VALUES = {("flow", "stage"): set(STAGES), ("feed", "kind"): {"synthetic", "replay"}}
INTERPOLATION = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)[^}]*\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
TOPIC_FAMILIES = sorted({name.split(".")[0] for name in BY_NAME if "." in name})
TOPIC_LIKE = re.compile(r"(?<![\w/.-])(?:%s)\.[A-Za-z_][A-Za-z0-9_.]*" % "|".join(map(re.escape, TOPIC_FAMILIES)))


# -- reading ---------------------------------------------------------------------------------------


def load_compose(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)  # safe_load resolves the x-* anchors and `<<` merge keys


def services(compose: dict) -> dict[str, dict]:
    return compose.get("services") or {}


def is_tapeflow(service: dict) -> bool:
    """Built from ./Dockerfile, whose entrypoint is `tapeflow`."""
    return "build" in service


def command_tokens(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(t) for t in command]


def environment(service: dict) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {item.split("=", 1)[0]: (item.split("=", 1)[1] if "=" in item else None) for item in env}
    return dict(env)


def depends_on(service: dict) -> dict[str, str | None]:
    needs = service.get("depends_on") or {}
    if isinstance(needs, list):
        return {name: None for name in needs}
    return {name: (spec or {}).get("condition") for name, spec in needs.items()}


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def documented_variables(env_example: str) -> set[str]:
    """Names .env.example assigns or shows commented out (``#NAME=...``)."""
    return set(re.findall(r"^\s*#?\s*([A-Za-z_][A-Za-z0-9_]*)=", env_example, flags=re.MULTILINE))


def known_tapeflow_env() -> set[str]:
    """Settings fields under their prefixes, plus every environment variable a CLI option reads."""
    names = {f"TAPEFLOW_{field.upper()}" for field in Settings.model_fields}
    names |= {f"APCA_{field.upper()}" for field in AlpacaSettings.model_fields}

    def walk(command: Any) -> None:
        for param in command.params:
            envvars = param.envvar if isinstance(param.envvar, (list, tuple)) else [param.envvar]
            names.update(e for e in envvars if e)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return names


# -- the checks ------------------------------------------------------------------------------------


def dockerfile_pin_problems(dockerfile: str) -> list[str]:
    """Every FROM is a build stage or an image with an exact version tag (x.y.z) or a digest."""
    args = dict(re.findall(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)", dockerfile, flags=re.MULTILINE))
    stages: set[str] = set()
    problems = []
    froms = re.findall(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", dockerfile, flags=re.MULTILINE | re.I)
    if not froms:
        problems.append("Dockerfile: no FROM line")
    for image, stage in froms:
        resolved = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        if resolved in stages:
            pass
        elif "$" in resolved:
            problems.append(f"Dockerfile: FROM {image}: the ARG has no default, the base image is not pinned")
        elif "@sha256:" not in resolved and not re.search(r":[^/:]*\d+\.\d+\.\d+[^/:]*$", resolved):
            problems.append(f"Dockerfile: FROM {resolved} is not pinned to an exact version tag or a digest")
        if stage:
            stages.add(stage)
    return problems


def image_pin_problems(compose: dict) -> list[str]:
    problems = []
    for name, service in services(compose).items():
        image = service.get("image")
        if is_tapeflow(service):
            continue  # pinned through the Dockerfile's FROM (dockerfile_pin_problems)
        if not image:
            problems.append(f"service {name}: neither image nor build")
        elif "@sha256:" in image:
            continue
        elif ":" not in image.rsplit("/", 1)[-1]:
            problems.append(f"service {name}: image {image} has no tag (means latest)")
        elif image.rsplit(":", 1)[1] in ("latest", "stable", "lts") or "$" in image:
            problems.append(f"service {name}: image {image} is not pinned to a version")
    return problems


# typer vendors click (typer._click), so its classes are told apart by what they expose.
def is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def is_option(param: Any) -> bool:
    return param.param_type_name == "option"


def command_problems(compose: dict) -> list[str]:
    """Each tapeflow service's command: a real subcommand, its options known to it, its required
    options given, its arguments among the allowed values."""
    root = typer.main.get_command(app)
    problems = []
    for name, service in services(compose).items():
        if not is_tapeflow(service):
            continue
        tokens = command_tokens(service)
        command = root
        path: list[str] = []
        while is_group(command):
            if not tokens or tokens[0] not in command.commands:
                problems.append(f"service {name}: `tapeflow {' '.join(path + tokens[:1])}` is not a tapeflow command")
                break
            path.append(tokens[0])
            command = command.commands[tokens.pop(0)]
        else:
            problems += _option_problems(name, path, command, tokens)
    return problems


def _option_problems(name: str, path: list[str], command: Any, tokens: list[str]) -> list[str]:
    options = {opt: p for p in command.params if is_option(p) for opt in p.opts + p.secondary_opts}
    arguments = [p for p in command.params if not is_option(p)]
    where = f"service {name}: `tapeflow {' '.join(path)}`"
    problems, given, positionals = [], set(), []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            flag = token.split("=", 1)[0]
            param = options.get(flag)
            if param is None:
                problems.append(f"{where} has no option {flag}")
            else:
                given.add(param.name)
                if not param.is_flag and "=" not in token:
                    i += 1  # the option's value
        else:
            positionals.append(token)
        i += 1
    for param in command.params:
        if is_option(param) and param.required and param.name not in given:
            problems.append(f"{where} misses the required option {param.opts[0]}")
    if len(positionals) != len(arguments):
        problems.append(f"{where} takes {len(arguments)} argument(s), got {positionals}")
    for param, value in zip(arguments, positionals):
        allowed = ARGUMENT_VALUES.get((path[-1], param.name))
        if allowed is not None and value not in allowed:
            problems.append(f"{where}: {param.name} {value!r} is not one of {sorted(allowed)}")
    return problems


def environment_problems(compose: dict) -> list[str]:
    known = known_tapeflow_env()
    problems = []
    for name, service in services(compose).items():
        for variable in environment(service):
            if is_tapeflow(service):
                if variable not in known:
                    problems.append(f"service {name}: {variable} is not a tapeflow setting or CLI variable")
                continue
            repository = (service.get("image") or "").split(":")[0].split("@")[0]
            allowed = THIRD_PARTY_ENV.get(repository)
            if allowed is None:
                problems.append(f"service {name}: image {repository!r} has no allowlist of its variables")
            elif not any(pattern.match(variable) for pattern in allowed):
                problems.append(f"service {name}: {variable} is not a variable {repository} reads")
    return problems


# The settings each non-stage tapeflow command reads (a stage's are tapeflow/cli_flows.py STAGE_SETTINGS).
COMMAND_SETTINGS = {
    "dashboard": {"warehouse", "database", "account", "control_path"},
    "run": set(Settings.model_fields) | {f"apca:{field}" for field in AlpacaSettings.model_fields},
    "topics": set(), "feed": set(), "lag": set(),
}


def _variables_read(tokens: list[str]) -> set[str]:
    from tapeflow.cli_flows import STAGE_SETTINGS

    fields = STAGE_SETTINGS.get(tokens[1], ()) if tokens[:1] == ["flow"] and len(tokens) > 1 else \
        COMMAND_SETTINGS.get(tokens[0] if tokens else "", set())
    names = {f"APCA_{f[5:].upper()}" if f.startswith("apca:") else f"TAPEFLOW_{f.upper()}" for f in fields}
    command = typer.main.get_command(app)
    for token in tokens:
        if not is_group(command) or token not in command.commands:
            break
        command = command.commands[token]
    for param in command.params:
        envvars = param.envvar if isinstance(param.envvar, (list, tuple)) else [param.envvar]
        names.update(e for e in envvars if e)
    return names


def unconsumed_problems(compose: dict) -> list[str]:
    """No setting or option is given to a service for nothing: each environment variable of a
    tapeflow service is read by its command, and each option of a `flow STAGE` is one that stage uses."""
    from tapeflow.cli_flows import STAGE_OPTIONS

    problems = []
    for name, service in services(compose).items():
        if not is_tapeflow(service):
            continue
        tokens = command_tokens(service)
        read = _variables_read(tokens)
        problems += [f"service {name}: {variable} is not read by `tapeflow {' '.join(tokens[:2])}`"
                     for variable in environment(service) if variable not in read]
        if tokens[:1] == ["flow"] and len(tokens) > 1:
            options = {"--" + option.replace("_", "-"): option for option in STAGE_OPTIONS}
            problems += [f"service {name}: the {tokens[1]} stage does not use {token}"
                         for token in tokens if token in options and tokens[1] not in STAGE_OPTIONS[options[token]]]
    return problems


def topic_problems(compose: dict) -> list[str]:
    named = {match for text in strings(compose) for match in TOPIC_LIKE.findall(text)}
    return [f"topic {topic} is not in the catalog (topics/catalog.py)" for topic in sorted(named - set(BY_NAME))]


def dependency_problems(compose: dict) -> list[str]:
    defined = set(services(compose))
    return [f"service {name} depends on undefined service {need}"
            for name, service in services(compose).items() for need in depends_on(service) if need not in defined]


def undocumented_variable_problems(compose: dict, env_example: str) -> list[str]:
    """Every ${VAR} interpolated, and every environment entry passed through without a value, is
    in .env.example (``$$`` is compose's literal dollar, not a variable)."""
    documented = documented_variables(env_example)
    used = set()
    for text in strings(compose):
        for match in INTERPOLATION.finditer(text.replace("$$", "")):
            used.add(match.group("braced") or match.group("bare"))
    for service in services(compose).values():
        used |= {variable for variable, value in environment(service).items() if value is None}
    return [f"{variable} is used by docker-compose.yml but not documented in .env.example"
            for variable in sorted(used - documented)]


def volume_problems(compose: dict, dockerfile: str) -> list[str]:
    """Named volumes are declared; a tapeflow service mounts only where the image has a directory
    the app user owns (else Docker creates the mount point as root and the stage cannot write)."""
    declared = set(compose.get("volumes") or {})
    owned = set(re.findall(r"(?<=\s)(/data[^\s\\]*)", " ".join(re.findall(r"mkdir -p[^&]*", dockerfile))))
    problems = []
    for name, service in services(compose).items():
        for mount in service.get("volumes") or []:
            source, target = (mount.split(":")[:2] if isinstance(mount, str)
                              else (mount.get("source"), mount.get("target")))
            if source and not source.startswith((".", "/", "~", "$")) and source not in declared:
                problems.append(f"service {name}: volume {source} is not declared under volumes:")
            if is_tapeflow(service) and target not in owned:
                problems.append(f"service {name}: mount point {target} is not created by the Dockerfile for the app user")
    return problems


# -- the stack as written --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(COMPOSE.read_text())


def test_compose_file_parses_into_services_and_volumes(compose: dict):
    assert {"kafka", "clickhouse", "topics", "feed", "dashboard", *STAGES} <= set(services(compose))
    assert compose["volumes"]


def test_every_image_is_pinned(compose: dict):
    assert image_pin_problems(compose) == []


def test_dockerfile_base_images_are_pinned_and_it_runs_as_a_non_root_user():
    dockerfile = DOCKERFILE.read_text()
    assert dockerfile_pin_problems(dockerfile) == []
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["tapeflow"\]', dockerfile, flags=re.MULTILINE)


def test_every_command_is_a_tapeflow_subcommand_with_options_it_accepts(compose: dict):
    assert command_problems(compose) == []


def test_every_environment_variable_is_a_known_setting(compose: dict):
    assert environment_problems(compose) == []


def test_every_environment_variable_and_stage_option_is_consumed_by_its_service(compose: dict):
    assert unconsumed_problems(compose) == []


def test_every_topic_named_is_in_the_catalog(compose: dict):
    assert topic_problems(compose) == []


def test_every_dependency_names_a_defined_service(compose: dict):
    assert dependency_problems(compose) == []


def test_every_interpolated_variable_is_documented_in_env_example(compose: dict):
    assert undocumented_variable_problems(compose, ENV_EXAMPLE.read_text()) == []


def test_every_volume_is_declared_and_its_mount_point_owned_by_the_app_user(compose: dict):
    assert volume_problems(compose, DOCKERFILE.read_text()) == []


def test_each_stage_runs_in_its_own_restarting_service_with_a_recovery_volume(compose: dict):
    for stage in STAGES:
        service = services(compose)[stage]
        tokens = command_tokens(service)
        assert tokens[:2] == ["flow", stage]
        assert tokens[tokens.index("--brokers") + 1] == "kafka:9092"
        recovery = tokens[tokens.index("--recovery-dir") + 1]
        assert recovery == f"/data/recovery/{stage}"
        assert any(str(m).endswith(f":{recovery}") for m in service["volumes"]), stage
        assert service["restart"] == "unless-stopped"
        needs = depends_on(service)
        assert needs["kafka"] == "service_healthy" and needs["topics"] == "service_completed_successfully", stage
    assert depends_on(services(compose)["sink"])["clickhouse"] == "service_healthy"


def test_separate_trading_stages_start_only_with_their_profile_so_orders_are_never_sent_twice(compose: dict):
    for stage in SEPARATE_TRADING:
        assert services(compose)[stage].get("profiles") == ["separate-trading"], stage
    assert "profiles" not in services(compose)["trading"]  # the default stack runs the fused desk


def test_sink_and_dashboard_write_to_the_clickhouse_server_with_the_env_credentials(compose: dict):
    for name in ("sink", "dashboard"):
        warehouse = environment(services(compose)[name])["TAPEFLOW_WAREHOUSE"]
        assert re.fullmatch(r"http://\$\{CLICKHOUSE_USER[^}]*\}:\$\{CLICKHOUSE_PASSWORD[^}]*\}@clickhouse:8123", warehouse)
    clickhouse = environment(services(compose)["clickhouse"])
    assert {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DB"} <= set(clickhouse)


def test_topics_service_is_one_shot(compose: dict):
    topics = services(compose)["topics"]
    assert command_tokens(topics)[:2] == ["topics", "create"] and topics["restart"] == "no"


def test_kafka_clickhouse_and_dashboard_have_healthchecks(compose: dict):
    for name in ("kafka", "clickhouse", "dashboard"):
        assert services(compose)[name]["healthcheck"]["test"], name


def test_dashboard_bound_beyond_loopback_gets_a_required_password(compose: dict):
    dashboard = services(compose)["dashboard"]
    tokens = command_tokens(dashboard)
    assert tokens[tokens.index("--host") + 1] == "0.0.0.0"
    password = environment(dashboard).get("TAPEFLOW_DASHBOARD_PASSWORD") or ""
    assert password.startswith("${TAPEFLOW_DASHBOARD_PASSWORD:?"), "compose must refuse to start without it"


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    ignore = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    assert "*" in ignore  # deny by default, then allow the packages one by one
    assert not any(line.lstrip("!").startswith((".env", "data", ".venv")) for line in ignore if line.startswith("!"))


# -- the checks can fail ---------------------------------------------------------------------------

BROKEN = """
services:
  kafka:
    image: apache/kafka
    environment:
      KAFKA_NODE_ID: 1
      TAPEFLOW_NOT_A_SETTING: x
  clickhouse:
    image: clickhouse/clickhouse-server:latest
  bars:
    build: .
    command: ["flow", "bar", "--broker", "kafka:9092", "--partition-count", "4"]
    environment:
      TAPEFLOW_LATENCY_MS: 5
      APCA_SECRET: x
      TAPEFLOW_WAREHOUSE: ${UNDOCUMENTED_URL}
    volumes:
      - undeclared:/data/recovery/bars
      - recovery:/var/lib/elsewhere
    depends_on:
      zookeeper:
        condition: service_healthy
  lag:
    build: .
    command: tapeflow lags --brokers kafka:9092 --topic md.bar
  feed:
    build: .
    command: ["feed", "alpaca", "--brokers", "kafka:9092", "--topic", "orders.intent"]
volumes:
  recovery:
"""
BROKEN_DOCKERFILE = "ARG BASE=python:3.11-slim\nFROM ${BASE} AS builder\nFROM builder\nFROM python:latest\nRUN mkdir -p /data/recovery/bars\n"


def test_broken_compose_snippet_is_reported_by_every_check():
    broken = load_compose(BROKEN)

    assert image_pin_problems(broken) == [
        "service kafka: image apache/kafka has no tag (means latest)",
        "service clickhouse: image clickhouse/clickhouse-server:latest is not pinned to a version",
    ]
    assert dockerfile_pin_problems(BROKEN_DOCKERFILE) == [
        "Dockerfile: FROM python:3.11-slim is not pinned to an exact version tag or a digest",
        "Dockerfile: FROM python:latest is not pinned to an exact version tag or a digest",
    ]
    commands = command_problems(broken)
    assert "service bars: `tapeflow flow` has no option --broker" in commands
    assert "service bars: `tapeflow flow` has no option --partition-count" in commands
    assert "service bars: `tapeflow flow` misses the required option --brokers" in commands
    assert any("stage 'bar' is not one of" in p for p in commands)
    assert "service lag: `tapeflow tapeflow` is not a tapeflow command" in commands  # entrypoint is already tapeflow
    assert any("service feed" in p and "kind 'alpaca' is not one of" in p for p in commands)
    assert "service feed: `tapeflow feed` has no option --topic" in commands
    assert environment_problems(broken) == [
        "service kafka: TAPEFLOW_NOT_A_SETTING is not a variable apache/kafka reads",
        "service bars: TAPEFLOW_LATENCY_MS is not a tapeflow setting or CLI variable",
        "service bars: APCA_SECRET is not a tapeflow setting or CLI variable",
    ]
    assert topic_problems(broken) == ["topic md.bar is not in the catalog (topics/catalog.py)"]
    assert unconsumed_problems(broken) == [
        "service bars: TAPEFLOW_LATENCY_MS is not read by `tapeflow flow bar`",
        "service bars: APCA_SECRET is not read by `tapeflow flow bar`",
        "service bars: TAPEFLOW_WAREHOUSE is not read by `tapeflow flow bar`",
    ]
    assert unconsumed_problems(load_compose(
        'services:\n  features:\n    build: .\n    command: ["flow", "features", "--brokers", "k:9092", '
        '"--symbols", "A", "--silent-after-s", "9"]\n    environment:\n      TAPEFLOW_ACCOUNT: x\n'
        '      TAPEFLOW_EPOCH_INTERVAL_S: "1"\n')) == [
        "service features: TAPEFLOW_ACCOUNT is not read by `tapeflow flow features`",
        "service features: the features stage does not use --symbols",
        "service features: the features stage does not use --silent-after-s",
    ]
    assert dependency_problems(broken) == ["service bars depends on undefined service zookeeper"]
    assert undocumented_variable_problems(broken, "TAPEFLOW_WAREHOUSE=x\n") == [
        "UNDOCUMENTED_URL is used by docker-compose.yml but not documented in .env.example"
    ]
    assert volume_problems(broken, BROKEN_DOCKERFILE) == [
        "service bars: volume undeclared is not declared under volumes:",
        "service bars: mount point /var/lib/elsewhere is not created by the Dockerfile for the app user",
    ]


def test_known_environment_includes_settings_alpaca_and_cli_variables():
    known = known_tapeflow_env()
    assert {"TAPEFLOW_WAREHOUSE", "TAPEFLOW_DATABASE", "APCA_API_KEY_ID", "TAPEFLOW_DASHBOARD_PASSWORD",
            "TAPEFLOW_KAFKA_BOOTSTRAP"} <= known
