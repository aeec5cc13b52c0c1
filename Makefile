# The README's two commands: `make run` (the embedded pipeline) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: setup chromium kafka-tools broker run test test-unit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "tapeflow needs Python 3.11 or 3.12 (Bytewax 0.21.1 wheels); found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

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
test: setup chromium kafka-tools
	TAPEFLOW_REQUIRE_KAFKA=1 $(BIN)/python -m pytest -q

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

broker: setup kafka-tools
	$(BIN)/tapeflow broker start && $(BIN)/tapeflow topics create

bench: setup
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) data build *.egg-info
