"""Grouped tests share a worker, and the fast tier goes last (tests/grouping.py): a small
suite of its own runs on two pytest-xdist workers, and each test says where it ran."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# Each test writes its worker and its name on a line of its own.
RECORD = """
import os
import pytest

def record(name):
    with open(os.environ["GROUPING_RECORD"], "a") as out:
        out.write(f"{os.environ['PYTEST_XDIST_WORKER']} {name}\\n")
"""


def record_by_worker(record: Path) -> dict[str, list[str]]:
    """What each test recorded, by the worker it ran on, in the order they ran."""
    ran: dict[str, list[str]] = defaultdict(list)
    for line in record.read_text().splitlines():
        worker, name = line.split()
        ran[worker].append(name)
    return ran


def grouped_module(group: str) -> str:
    tests = "\n".join(f"def test_{n}(): record('{group}')" for n in range(8))
    return f"{RECORD}\npytestmark = pytest.mark.xdist_group({group!r})\n{tests}\n"


@pytest.mark.slow
def test_every_test_of_a_group_runs_on_one_worker_and_the_rest_on_both(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    record = tmp_path / "ran.txt"
    monkeypatch.setenv("GROUPING_RECORD", str(record))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    loose = "\n".join(f"def test_{n}(): record('loose')" for n in range(24))
    pytester.makepyfile(
        test_a=grouped_module("a"), test_b=grouped_module("b"), test_loose=f"{RECORD}\n{loose}\n"
    )
    result = pytester.runpytest_subprocess(
        "-p", "tests.grouping", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup"
    )
    result.assert_outcomes(passed=40)
    workers: dict[str, list[str]] = defaultdict(list)
    for worker, names in record_by_worker(record).items():
        for name in names:
            workers[name].append(worker)
    assert len(workers["a"]) == len(workers["b"]) == 8
    assert len(set(workers["a"])) == 1, workers["a"]
    assert len(set(workers["b"])) == 1, workers["b"]
    # The groups go out first, one to each worker; the loose tests fill in around them.
    assert set(workers["a"]) != set(workers["b"])
    assert len(workers["loose"]) == 24


@pytest.mark.slow
def test_every_slow_test_is_dealt_out_before_the_fast_tier(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    record = tmp_path / "ran.txt"
    monkeypatch.setenv("GROUPING_RECORD", str(record))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    fast = "\n".join(f"def test_{n}(): record('fast')" for n in range(12))
    # Slow by a fixture that starts a server, as tests/tiers.py marks them at collection.
    slow = "\n".join(f"def test_{n}(make_server): record('slow')" for n in range(12))
    stand_in = "@pytest.fixture\ndef make_server():\n    return None\n"
    # The fast module comes first by name, and so in the collection.
    pytester.makepyfile(
        test_a_fast=f"{RECORD}\n{fast}\n", test_b_slow=f"{RECORD}\n{stand_in}\n{slow}\n"
    )
    result = pytester.runpytest_subprocess(
        *("-p", "tests.tiers", "-p", "tests.grouping", "-p", "no:cacheprovider"),
        *("-n", "2", "--dist", "loadgroup"),
    )
    result.assert_outcomes(passed=24)
    ran = record_by_worker(record)
    assert sorted(name for names in ran.values() for name in names) == ["fast"] * 12 + ["slow"] * 12
    for names in ran.values():
        assert names == sorted(names, key=lambda name: name == "fast"), names
