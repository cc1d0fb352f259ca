"""Two tiers of tests: ``make test-fast`` runs the unmarked ones, ``make test`` all.

A test is ``slow`` when it needs another process: a feed server, PostgreSQL, Valkey,
Chromium, or any program it starts itself. The fast tier is what is left, the core
logic in this process, and it must stay fast without anyone curating a list:

1. Marking follows fixtures. A test that uses one of ``SLOW_FIXTURES`` (directly or
   through another fixture), or runs on PostgreSQL through ``each_database_url``, is
   marked ``slow`` at collection. Tests that start a program themselves say so with
   ``@pytest.mark.slow``.
2. Nothing else may start a process. While an unmarked test sets up or runs, an audit
   hook refuses every way Python has of starting one (``subprocess``, ``os.fork``,
   ``posix_spawn``, ``exec``, ``system``), and the test fails naming what it tried to
   start and how to mark it. The hook is on in both tiers, so a new test that starts a
   process without being marked fails in ``make test`` too, before it can slow the fast
   tier down. Teardown is not watched: the last test of a session, fast or not, is where
   pytest stops the session's PostgreSQL and Valkey.
3. The refusal is recorded as well as raised, so a test whose code swallows the
   exception still fails.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest

# Fixtures that start another process; "make_server" covers "server" and every
# fixture built on it, since a test's fixture names include what its fixtures use.
SLOW_FIXTURES = frozenset({"make_server", "postgres", "valkey", "browser", "stale_metrics"})
# How Python starts another process; each raises an audit event first.
SPAWN_EVENTS = frozenset(
    {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec"}
    | {"os.system"}
)
HOW_TO_MARK = (
    "a test that needs another process is marked slow: use a fixture that starts it "
    f"({', '.join(sorted(SLOW_FIXTURES))}) or mark the test @pytest.mark.slow"
)


class SpawnRefused(RuntimeError):
    """An unmarked test tried to start another process."""


class _Watch:
    """Whether the running test may start processes, and what it tried to start."""

    def __init__(self) -> None:
        self.active = False
        self.refused: list[str] = []

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event not in SPAWN_EVENTS:
            return
        what = f"{event} {_describe(args)}".rstrip()
        self.refused.append(what)
        raise SpawnRefused(f"refused {what}: {HOW_TO_MARK}")


def _describe(args: tuple[Any, ...]) -> str:
    # subprocess.Popen: (executable, args, cwd, env); os.exec/posix_spawn: (path, argv, env)
    if len(args) >= 2 and isinstance(args[1], list | tuple):
        return " ".join(str(a) for a in args[1])[:200]
    return " ".join(str(a) for a in args[:1])[:200]


_watch = _Watch()
sys.addaudithook(_watch.audit)  # an audit hook cannot be removed: it checks _watch.active


def is_slow(item: pytest.Item) -> bool:
    if item.get_closest_marker("slow") or item.get_closest_marker("browser"):
        return True
    names = set(getattr(item, "fixturenames", ()))
    if names & SLOW_FIXTURES:
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("each_database_url") == "postgresql"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: needs another process (a server, a database, a browser, a program)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_slow(item) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


def _watched(item: pytest.Item) -> Generator[None, object, object]:
    # Nested sessions (pytester) run inside a test: restore the outer test's state.
    outer_active, outer_refused = _watch.active, _watch.refused
    _watch.active, _watch.refused = item.get_closest_marker("slow") is None, []
    try:
        result = yield
    finally:
        refused = _watch.refused
        _watch.active, _watch.refused = outer_active, outer_refused
    if refused:
        raise SpawnRefused(f"{item.nodeid} tried to start {refused[0]}: {HOW_TO_MARK}")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _watched(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _watched(item))
