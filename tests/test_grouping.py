"""Grouped tests share a worker (tests/grouping.py): a small suite of its own runs on two
pytest-xdist workers, and each test says where it ran."""

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
    for line in record.read_text().splitlines():
        worker, name = line.split()
        workers[name].append(worker)
    assert len(workers["a"]) == len(workers["b"]) == 8
    assert len(set(workers["a"])) == 1, workers["a"]
    assert len(set(workers["b"])) == 1, workers["b"]
    # The groups go out first, one to each worker; the loose tests fill in around them.
    assert set(workers["a"]) != set(workers["b"])
    assert len(workers["loose"]) == 24
