"""Tests marked ``xdist_group`` run on one pytest-xdist worker under ``--dist loadgroup``.

tests/conftest.py marks every test of a module that shares something across its tests
(Chromium, mostly) with the module's group, so that the module starts it once.

1. The mark has to reach the scheduler, which runs in the controller: the controller
   collects nothing and sees only the node ids the workers report. pytest-xdist carries
   the group by appending it to each test's node id on the worker; pytest's structured
   node ids ignore that assignment, and then nothing is grouped: the tests of a browser
   module were dealt out one at a time, alternating between workers, and each worker
   started Chromium again for most of them. So the groups travel beside the ids: each
   worker writes the group of every grouped test to a file in a directory the controller
   names in the worker's input, before it reports its collection (``tryfirst``: the
   report goes out from pytest-xdist's own hook), and the scheduler reads them when it
   cuts the collection into work units, which it does only once every worker has
   reported. A test found in no file keeps pytest-xdist's own reading of its id.
2. The work units go out largest first (pytest-xdist's ``loadscope`` reordering, on by
   default): a browser module starts early, never as the long tail of a run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.scheduler.protocol import Scheduling
    from xdist.workermanage import WorkerController

GROUPS_KEY = "feed_groups"  # in the worker's input: the directory of the group files
_directory = pytest.StashKey[Path]()


def _groups_directory(config: pytest.Config) -> Path:
    if _directory not in config.stash:
        config.stash[_directory] = Path(tempfile.mkdtemp(prefix="feed-xdist-groups-"))
    return config.stash[_directory]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: WorkerController) -> None:
    node.workerinput[GROUPS_KEY] = str(_groups_directory(node.config))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    workerinput: dict[str, Any] | None = getattr(session.config, "workerinput", None)
    if workerinput is None or GROUPS_KEY not in workerinput:
        return
    groups = {}
    for item in session.items:
        mark = item.get_closest_marker("xdist_group")
        if mark is not None:
            groups[item.nodeid] = str(mark.args[0] if mark.args else mark.kwargs["name"])
    final = Path(workerinput[GROUPS_KEY]) / f"{workerinput['workerid']}.json"
    written = final.with_suffix(".tmp")
    written.write_text(json.dumps(groups))
    os.replace(written, final)  # the controller never reads half a file


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    directory = _groups_directory(config)

    class GroupScheduling(LoadGroupScheduling):
        """pytest-xdist's loadgroup, with the groups read from the workers' files."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                self.groups = {}
                for found in sorted(directory.glob("*.json")):
                    self.groups.update(json.loads(found.read_text()))
            return self.groups.get(nodeid) or super()._split_scope(nodeid)

    return GroupScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _directory in config.stash:
        shutil.rmtree(config.stash[_directory], ignore_errors=True)
