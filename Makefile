# The README's two commands: `make run` (the embedded pipeline) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-test.lock | sha1sum | cut -c1-12)

.PHONY: setup lock chromium kafka-tools broker run test test-unit bench clean

# pyproject.toml states the version ranges tapeflow works with (so it installs beside a user's own
# code); requirements-test.lock pins the exact set `make` and CI install, requirements.lock the
# runtime subset at the same versions (the Docker image). `make lock` re-resolves both (keeping
# current pins unless the ranges exclude them) after a change to pyproject.toml.
$(STAMP): pyproject.toml requirements-test.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "tapeflow needs Python 3.11 or 3.12 (Bytewax 0.21.1 wheels); found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -r requirements-test.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

LOCK_PLATFORM := --python-version 3.11 --python-platform x86_64-manylinux_2_31
lock:
	$(PYTHON) -m venv .lock-tools && .lock-tools/bin/pip install --quiet uv==0.13.9
	.lock-tools/bin/uv pip compile pyproject.toml --extra test $(LOCK_PLATFORM) --quiet \
	  -o requirements-test.lock --custom-compile-command "make lock"
	.lock-tools/bin/uv pip compile pyproject.toml -c requirements-test.lock $(LOCK_PLATFORM) --quiet \
	  -o requirements.lock --custom-compile-command "make lock"

# Browser tests drive Debian's Chromium (never a browser a tool downloads); Kafka tests need Java.
chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

# The Kafka tests run a real broker: Apache Kafka's jars from Maven Central, run by Java 17+.
kafka-tools:
	@(command -v java >/dev/null && command -v mvn >/dev/null) || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven)

# The main job: synthetic tape paced at 2,000 ticks/s through the embedded pipeline, with its
# dashboard on http://127.0.0.1:5006, until Ctrl-C.
run: setup
	$(BIN)/tapeflow run --feed synthetic --rate 2000

# TAPEFLOW_REQUIRE_KAFKA=1: a machine without Kafka fails the Kafka tests instead of skipping them.
# Two pytest-xdist workers: one runs the tests with process trees (broker, stages, Chromium) in turn,
# the other every in-process test at nice +10 (tests/conftest.py).
test: setup chromium kafka-tools
	TAPEFLOW_REQUIRE_KAFKA=1 $(BIN)/python -m pytest -q -n 2

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

broker: setup kafka-tools
	$(BIN)/tapeflow broker start && $(BIN)/tapeflow topics create

bench: setup
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) .lock-tools data build *.egg-info
