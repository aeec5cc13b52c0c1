"""A real single-node Apache Kafka broker (KRaft) for a developer without Docker, and for the tests.

The jars come from Maven Central through ``infra/kafka/pom.xml`` (resolved once into a cache folder);
the broker runs as a detached ``java`` process whose config, KRaft log, pid file and server log all
live under one data folder, so ``tapeflow broker start|status|stop`` from separate commands, and the
test fixture in-process, find the same broker again.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "infra" / "kafka" / "log4j2.xml"
INSTALL_HINT = "install them with `apt-get install openjdk-17-jre-headless maven` (Debian/Ubuntu)"
MIN_JAVA = 17
HOST = "127.0.0.1"


def request_threads(cpus: int) -> dict[str, str]:
    """Network and request-handler threads for a broker that shares ``cpus`` cores with the
    pipeline. Kafka's defaults (3 and 8) size a server of its own; on a 2-core laptop the hand-offs
    between 11 threads cost more than they serve: with 1 and 2 the broker took ~45-52% of a core
    instead of ~50-61% at 5,000 ticks/s (a paced `tapeflow run --brokers`)."""
    return {"num.network.threads": str(min(3, max(1, cpus // 4))),
            "num.io.threads": str(min(8, max(2, cpus)))}


class BrokerError(RuntimeError):
    """The local broker could not be prepared, started or stopped; the message says what to do."""


def default_cache_dir() -> Path:
    """Where resolved Kafka jars are kept across data folders: env TAPEFLOW_KAFKA_CACHE, else
    ``~/.cache/tapeflow/kafka`` (43 MB for Kafka 4.1)."""
    env = os.environ.get("TAPEFLOW_KAFKA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tapeflow" / "kafka"


def kafka_version(pom: Path = KAFKA_POM) -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if not match:
        raise BrokerError(f"{pom} has no <kafka.version> property")
    return match.group(1).strip()


def require_tool(name: str, which: Callable[[str], str | None] = shutil.which) -> str:
    path = which(name)
    if path is None:
        what = "a Java 17+ runtime" if name == "java" else "Maven (to fetch the Kafka jars once)"
        raise BrokerError(f"`{name}` not found on PATH: the local Kafka broker needs {what}; {INSTALL_HINT}")
    return path


def java_major_version(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise BrokerError(f"could not read the version of {java}: {(out.stderr or out.stdout).strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def resolve_kafka_jars(cache_dir: Path | None = None, say: Callable[[str], None] = print,
                       which: Callable[[str], str | None] = shutil.which) -> Path:
    """The folder of Kafka's jars, resolving it with Maven on first use. A marker file is written
    only after Maven succeeded, so an interrupted download is never mistaken for a complete one."""
    version = kafka_version()
    lib = (cache_dir or default_cache_dir()) / f"kafka-{version}" / "lib"
    marker = lib / ".complete"
    if marker.exists():
        return lib
    mvn = require_tool("mvn", which)
    staging = lib.parent / f"lib.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    say(f"resolving Apache Kafka {version} jars from Maven Central into {lib} (once; ~15 s) ...")
    started = time.monotonic()
    cmd = [mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise BrokerError(f"Maven did not resolve the Kafka jars within 15 minutes: {' '.join(cmd)}") from None
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(f"Maven failed to resolve the Kafka jars (exit {done.returncode}); "
                          f"check that Maven Central is reachable. Command: {' '.join(cmd)}\n{tail}")
    (staging / ".complete").write_text(version + "\n")
    try:
        staging.rename(lib)
    except OSError:  # another process finished first: use its folder
        shutil.rmtree(staging, ignore_errors=True)
        if not marker.exists():
            raise
    say(f"resolved {len(list(lib.glob('*.jar')))} jars in {time.monotonic() - started:.1f}s")
    return lib


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def kafka_cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding. Like Kafka's own
    ``Uuid.randomUuid``, never one starting with "-": the storage tool's argument parser would take
    it for an option and refuse to format (1 start in 64 failed that way)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def broker_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when the broker serves metadata (not just an open port)."""
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError:
        return False  # not listening yet: skip the client, whose connect errors would flood stderr
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except Exception:  # KafkaException while the broker is still registering
        return False


def die_with_parent() -> None:  # runs in the child between fork and exec
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _spawn_tied(launch: Callable[[], subprocess.Popen]) -> subprocess.Popen:
    """Run ``launch`` (a Popen with :func:`die_with_parent`) on a thread that lives as long as this
    process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process. A broker
    restarted from a short-lived thread (a test bouncing the broker while its main thread waits on a
    dataflow) got SIGTERM the moment that thread returned, and every stage then waited forever for a
    broker that was gone. The executor's one worker thread ends only at interpreter exit, which is
    exactly when a tied broker should go.
    """
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tapeflow-broker-parent")
        spawner = _spawner
    return spawner.submit(launch).result()


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    ready: bool
    pid: int | None
    bootstrap: str | None
    data_dir: str
    log: str
    kafka_version: str | None

    def line(self) -> str:
        if not self.running:
            return f"broker stopped (data {self.data_dir})"
        state = "ready" if self.ready else "running, not answering yet"
        return f"broker {state} at {self.bootstrap} (pid {self.pid}, Kafka {self.kafka_version}, log {self.log})"


# The broker's collector. A pause at the broker holds up every stage's next hop at once, and tick-to-
# order latency is measured through this broker. Kafka's own launcher runs G1 with a 20 ms target; on
# two cores shared with the stages that paused 15-25 ms every second or two at 5,000 ticks/s, and up
# to 126 ms (-Xlog:gc over a paced benchmarks/kafka_pipeline.py run). ZGC (production since Java 15)
# marks and moves concurrently: the broker's safepoints in the same runs were p99 2-4 ms, max 3.5-8.5
# ms (longer only when the machine itself was overloaded). The heap is committed at start
# (-Xms = -Xmx, as Kafka's launcher does), so no collection waits for the OS to hand over pages.
BROKER_GC_OPTS = ("-server", "-XX:+UseZGC")
# The collector's log in the data folder (two files of 10 MiB at most): its collections and every
# safepoint, each with the time application threads stood still (LocalBroker.pauses_ms).
GC_LOG = "gc.log"
_SAFEPOINT = re.compile(r"^\[([^\]]+)\]\[[^\]]+\] Safepoint .*Total: (\d+) ns")


def safepoint_pauses_ms(logs: list[Path], since: datetime, until: datetime) -> list[float]:
    """Safepoint pauses (ms) logged in ``logs`` (``-Xlog:safepoint`` with the ``time`` decoration)
    between ``since`` and ``until``."""
    pauses = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            match = _SAFEPOINT.match(line)
            if match and since <= datetime.fromisoformat(match.group(1)) <= until:
                pauses.append(int(match.group(2)) / 1e6)
    return pauses


class LocalBroker:
    """One KRaft node (broker and controller) listening on 127.0.0.1, its files under ``data_dir``."""

    def __init__(self, data_dir: Path | str, port: int | None = None, *, controller_port: int | None = None,
                 heap: str = "512m", cache_dir: Path | None = None, extra_properties: dict[str, str] | None = None,
                 which: Callable[[str], str | None] = shutil.which, say: Callable[[str], None] | None = None,
                 tied_to_parent: bool = False):
        self.data_dir = Path(data_dir).resolve()
        self.requested_port = port
        self.requested_controller_port = controller_port
        self.heap = heap
        self.cache_dir = cache_dir
        self.extra_properties = dict(extra_properties or {})
        self.which = which
        self.say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        # True for a test session's broker: it gets SIGTERM when the starting process dies (not the
        # starting thread: see _spawn_tied), so a killed pytest (a CI timeout) leaves no broker behind.
        # The CLI's broker outlives its command.
        self.tied_to_parent = tied_to_parent
        self._process: subprocess.Popen | None = None  # set when this object started the broker
        self._log_offsets: dict[Path, int] = {}

    # files under data_dir
    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "broker.json"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def console_path(self) -> Path:
        return self.data_dir / "broker.out"  # JVM output before log4j is up (bad flags, crashes)

    @property
    def gc_log_path(self) -> Path:
        return self.data_dir / GC_LOG

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    def _state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _alive_pid(self) -> int | None:
        """The recorded pid if that process is still this data folder's broker (not a reused pid)."""
        pid = self._state().get("pid")
        if not pid:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return None  # exited, not yet reaped by its parent
        if not cmdline.strip():
            return pid  # unreadable for an instant while the java launcher re-executes itself
        if "kafka.Kafka" not in cmdline or str(self.properties_path) not in cmdline:
            return None  # the pid was reused by another program
        return pid

    def status(self, check_ready: bool = True) -> BrokerStatus:
        state = self._state()
        pid = self._alive_pid()
        bootstrap = state.get("bootstrap") if pid else None
        ready = bool(pid and check_ready and bootstrap and broker_answers(bootstrap))
        return BrokerStatus(running=pid is not None, ready=ready, pid=pid, bootstrap=bootstrap,
                            data_dir=str(self.data_dir), log=str(self.log_path),
                            kafka_version=state.get("kafka_version"))

    @property
    def bootstrap(self) -> str:
        status = self.status(check_ready=False)
        if not status.running:
            raise BrokerError(f"no broker running for {self.data_dir}; start it with `tapeflow broker start "
                              f"--data-dir {self.data_dir}`")
        return status.bootstrap

    def _ports(self) -> tuple[int, int]:
        """The requested ports, else the ones this data folder used before (a stable bootstrap
        address across restarts), else free ones."""
        state = self._state()
        port = self.requested_port or state.get("port")
        controller = self.requested_controller_port or state.get("controller_port")
        if port and not port_is_free(port):
            raise BrokerError(f"port {port} on {HOST} is taken by another process: stop it, or choose another "
                              f"port with --port (`ss -ltnp 'sport = :{port}'` shows who holds it)")
        if controller and not port_is_free(controller):
            if self.requested_controller_port:
                raise BrokerError(f"controller port {controller} on {HOST} is taken; choose another")
            controller = None  # the controller port is internal: any free one will do
        port = port or free_port()
        while not controller or controller == port:
            controller = free_port()
        return port, controller

    def _write_properties(self, port: int, controller_port: int) -> None:
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # static voters rather than --standalone: the voter address lives in this file, not in the
            # formatted metadata log, so a restart may take a different controller port
            "controller.quorum.voters": f"1@{HOST}:{controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.kraft_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            # the first consumer group creates __consumer_offsets: 50 partitions (the default) cost
            # seconds on two cores, which every test session would pay
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # the log cleaner (compacted topics, __consumer_offsets among them) takes this buffer from the
            # heap at start: Kafka's 128 MiB default is a quarter of the heap and most of what a single
            # node keeps live. 16 MiB maps ~700,000 keys per cleaning pass (24 bytes each).
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            # topics come from the catalog (`tapeflow topics create`); a typo must fail, not create one
            "auto.create.topics.enable": "false",
            **request_threads(os.cpu_count() or 1),
            **self.extra_properties,
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))

    def _java_command(self, java: str, lib: Path, main: str, *args: str, broker: bool = False) -> list[str]:
        """``broker``: the long-running server (its collector, whole heap and GC log), not a tool."""
        jvm = ([f"-Xms{self.heap}", *BROKER_GC_OPTS, f"-Xlog:gc,safepoint:file=\"{self.gc_log_path}\":time,uptime:filecount=2,filesize=10m"]
               if broker else [])
        return [java, f"-Xmx{self.heap}", *jvm, "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={self.data_dir}",
                "-cp", f"{lib}/*", main, *args]

    def _format_storage(self, java: str, lib: Path) -> None:
        if (self.kraft_dir / "meta.properties").exists():
            return
        cmd = self._java_command(java, lib, "kafka.tools.StorageTool", "format", "--cluster-id", kafka_cluster_id(),
                                 "--config", str(self.properties_path))
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise BrokerError(f"formatting KRaft storage in {self.kraft_dir} failed (exit {done.returncode}):\n"
                              f"{(done.stdout + done.stderr).strip()[-2000:]}")

    def start(self, timeout_s: float = 60.0) -> BrokerStatus:
        """Start the broker detached and wait until it serves metadata; a no-op when it already runs."""
        status = self.status(check_ready=False)
        if status.running:
            self.say(f"broker already running at {status.bootstrap} (pid {status.pid})")
            self._wait_ready(status.bootstrap, status.pid, timeout_s, time.monotonic())
            return self.status()
        started = time.monotonic()
        java = require_tool("java", self.which)
        major = java_major_version(java)
        if major < MIN_JAVA:
            raise BrokerError(f"{java} is Java {major}; Kafka {kafka_version()} needs Java {MIN_JAVA}+: {INSTALL_HINT}")
        port, controller_port = self._ports()  # before the jars: a taken port fails in a second, not after Maven
        lib = resolve_kafka_jars(self.cache_dir, self.say, self.which)
        self._write_properties(port, controller_port)
        self._format_storage(java, lib)
        bootstrap = f"{HOST}:{port}"
        cmd = self._java_command(java, lib, "kafka.Kafka", str(self.properties_path), broker=True)
        # both logs are appended across runs: a failure report shows only this run's lines
        self._log_offsets = {p: p.stat().st_size if p.exists() else 0 for p in (self.console_path, self.log_path)}
        launched = time.monotonic()
        with open(self.console_path, "ab") as console:
            # a session of its own: Ctrl-C in the shell that ran `tapeflow broker start` leaves it running
            launch = lambda: subprocess.Popen(  # noqa: E731
                cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, cwd=self.data_dir,
                start_new_session=True, preexec_fn=die_with_parent if self.tied_to_parent else None)
            self._process = _spawn_tied(launch) if self.tied_to_parent else launch()
        state = {"pid": self._process.pid, "port": port, "controller_port": controller_port, "bootstrap": bootstrap,
                 "kafka_version": kafka_version(), "started_at": time.time()}
        self.state_path.write_text(json.dumps(state, indent=2) + "\n")
        (self.data_dir / "broker.pid").write_text(f"{self._process.pid}\n")
        self.say(f"starting Kafka {state['kafka_version']} at {bootstrap} (pid {self._process.pid}, log {self.log_path})")
        self._wait_ready(bootstrap, self._process.pid, timeout_s, launched)  # Maven's time is not the broker's
        self.say(f"broker ready at {bootstrap} in {time.monotonic() - started:.1f}s")
        return self.status()

    def _wait_ready(self, bootstrap: str, pid: int, timeout_s: float, started: float) -> None:
        deadline = started + timeout_s
        next_note = time.monotonic() + 5
        while not broker_answers(bootstrap, timeout_s=1.0):
            exited = self._process.poll() is not None if self._process is not None else self._alive_pid() != pid
            if exited:
                raise BrokerError(f"the broker (pid {pid}) exited during start; last lines of its logs:\n{self.log_tail()}")
            now = time.monotonic()
            if now > deadline:
                raise BrokerError(f"the broker at {bootstrap} did not answer within {timeout_s:.0f}s (pid {pid} still "
                                  f"running; stop it with `tapeflow broker stop --data-dir {self.data_dir}`); "
                                  f"last lines of its log:\n{self.log_tail()}")
            if now >= next_note:
                self.say(f"  waiting for the broker at {bootstrap} ({now - started:.0f}s) ...")
                next_note = now + 5
            time.sleep(0.2)  # polling a port: there is no event to await from another process

    def pauses_ms(self, since: datetime, until: datetime) -> list[float]:
        """How long the broker's JVM stood still at each safepoint (collector pauses among them)
        between ``since`` and ``until`` (aware datetimes), from its GC log, oldest first."""
        return safepoint_pauses_ms(sorted(self.data_dir.glob(f"{GC_LOG}*"), key=lambda p: p.stat().st_mtime),
                                   since, until)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the JVM output and the server log (of this run, when this object started it)."""
        parts = []
        for path in (self.console_path, self.log_path):
            if path.exists():
                with open(path, "rb") as log:
                    log.seek(self._log_offsets.get(path, 0))
                    text = log.read().decode(errors="replace").strip().splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(parts) or f"(no log written under {self.data_dir})"

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM (a controlled shutdown), then SIGKILL after ``timeout_s``. False when not running."""
        pid = self._alive_pid()
        if pid is None:
            self._reap()
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self._alive_pid() == pid and time.monotonic() < deadline:
            self._reap(block=False)
            time.sleep(0.1)
        if self._alive_pid() == pid:
            self.say(f"broker pid {pid} ignored SIGTERM for {timeout_s:.0f}s; killing it")
            os.kill(pid, signal.SIGKILL)
            while self._alive_pid() == pid:
                self._reap(block=False)
                time.sleep(0.05)
        self._reap()
        (self.data_dir / "broker.pid").unlink(missing_ok=True)
        return True

    def _reap(self, block: bool = True) -> None:
        """Collect the exit status when this process is the broker's parent (else it stays a zombie)."""
        if self._process is not None:
            if block:
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    return
                self._process = None
            else:
                self._process.poll()

    def __enter__(self) -> "LocalBroker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
