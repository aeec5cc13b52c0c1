"""Registers the shared fixtures (defined in tests/fixtures.py, per the project's style)."""

import pytest

from tests.fixtures import module_warehouse, warehouse, warehouse_path  # noqa: F401
from tests.kafka_fixtures import kafka_bootstrap, kafka_topics, session_kafka  # noqa: F401
from tests.clickhouse_fixtures import clickhouse_url, server_warehouse  # noqa: F401


# With pytest-xdist (`-n 2`, as `make test` runs), the tests that run a process tree of their own (a
# Kafka broker and stage processes, or a pipeline with Chromium) take turns on one worker, and every other
# test runs on the second worker at a lower CPU priority (nice +10): two process trees at once, or an
# in-process test at full priority, on two cores starved the stages into timeouts. (xdist's own
# `--dist loadgroup` reads groups off node ids, which pytest 9 no longer lets a plugin rename.)
PROCESS_TREE_PATHS = ("tests/e2e/", "tests/integration/kafka/")


def runs_a_process_tree(nodeid: str) -> bool:
    return nodeid.startswith(PROCESS_TREE_PATHS)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, unknown to pytest without it
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ProcessTreesApart(LoadScopeScheduling):
        """Two scopes, one per worker: the process-tree tests and the in-process ones."""

        def _split_scope(self, nodeid: str) -> str:
            return "process trees" if runs_a_process_tree(nodeid) else "in process"

    return ProcessTreesApart(config, log)


_yielded: list[bool] = []


def pytest_runtest_setup(item):
    import os

    if _yielded or not os.environ.get("PYTEST_XDIST_WORKER") or runs_a_process_tree(item.nodeid):
        return
    os.nice(10)  # this worker runs only in-process tests: the process trees come first
    _yielded.append(True)
