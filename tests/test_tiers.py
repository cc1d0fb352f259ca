"""The two tiers (tests/tiers.py): a test that needs another process is marked slow by
the fixtures it uses, and an unmarked one that starts a process anyway fails in both
tiers. Each case runs a small suite of its own through pytest, in this process."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# Stand-ins with the names of the fixtures that start processes, so the suites below
# start none: what is proven is the marking, by name.
FIXTURES = """
import subprocess
import pytest

@pytest.fixture
def make_server():
    return "a server"

@pytest.fixture
def server(make_server):
    return make_server

@pytest.fixture
def postgres():
    return "a database"

@pytest.fixture(params=["sqlite", "postgresql"])
def each_database_url(request):
    return request.param
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makeconftest(FIXTURES)
    pytester.makepyfile(test_suite=source)
    return pytester.runpytest_inprocess("-p", "tests.tiers", "-q", *args)


def test_tests_using_server_or_database_fixtures_are_left_out_of_the_fast_tier(
    pytester: pytest.Pytester,
) -> None:
    suite = """
def test_logic(): pass
def test_through_a_server(server): pass
def test_on_postgres(postgres): pass
def test_on_each_store(each_database_url): pass
"""
    fast = run(pytester, suite, "-m", "not slow", "--collect-only")
    assert sorted(line for line in fast.outlines if "::" in line) == [
        "test_suite.py::test_logic",
        "test_suite.py::test_on_each_store[sqlite]",
    ]
    slow = run(pytester, suite, "-m", "slow", "--collect-only")
    assert sorted(line for line in slow.outlines if "::" in line) == [
        "test_suite.py::test_on_each_store[postgresql]",
        "test_suite.py::test_on_postgres",
        "test_suite.py::test_through_a_server",
    ]


def test_an_unmarked_test_that_starts_a_process_fails_naming_it(
    pytester: pytest.Pytester,
) -> None:
    suite = """
import subprocess

def test_runs_a_program():
    subprocess.run(["true", "--from-an-unmarked-test"], check=True)

def test_swallows_the_refusal():
    try:
        subprocess.run(["true"], check=True)
    except Exception:
        pass
"""
    result = run(pytester, suite)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*refused subprocess.Popen true --from-an-unmarked-test: a test that needs "
            "another process is marked slow*@pytest.mark.slow*",
            "*test_swallows_the_refusal tried to start subprocess.Popen true*",
        ]
    )


def test_a_fixture_that_starts_a_process_for_an_unmarked_test_fails_it(
    pytester: pytest.Pytester,
) -> None:
    suite = """
import os
import pytest

@pytest.fixture
def forked():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)

def test_uses_it(forked): pass
"""
    result = run(pytester, suite)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*refused os.fork*"])


def test_a_test_marked_slow_may_start_processes(pytester: pytest.Pytester) -> None:
    suite = """
import subprocess
import pytest

@pytest.mark.slow
def test_runs_a_program():
    assert subprocess.run(["true"]).returncode == 0

def test_logic(): pass
"""
    run(pytester, suite).assert_outcomes(passed=2)
    run(pytester, suite, "-m", "not slow").assert_outcomes(passed=1, deselected=1)
