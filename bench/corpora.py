"""Loaded search corpora, kept between runs of ``python -m bench search``.

Rationale:

1. Generating a million posts takes seconds; indexing them as they load takes
   minutes. So the loaded database is kept under ``bench/cache/`` (git-ignored),
   named by everything the corpus is made from (``key``), and a later run with the
   same parameters copies it instead of loading again. A copy, never the kept file
   itself: a run writes to its database (the migrations, the planner's statistics).
2. A kept database is at the schema it was loaded with; the run brings its copy up to
   date with the migrations, as any database made before a change is brought. So a
   new index is measured on a kept corpus without loading it again.
3. PostgreSQL keeps a database only inside its cluster, so the whole data directory is
   kept (one cluster, one database ``corpus``), copied with its owner, the user the
   server runs as, and started as the run's own cluster.
4. What is kept appears under its final name only once complete (written under
   another name, then renamed), so a run stopped half-way leaves nothing that a
   later run could take for a corpus.
5. The cluster runs with ``SHARED_BUFFERS`` of shared memory, as a server holding a
   million posts would be set up, not initdb's 128 MB (the tests' clusters keep
   that): with 128 MB the posts, their ``tsvector`` and the GIN index (about
   400 MB) do not fit, and every row a search rechecks is copied in from the
   operating system's cache.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.fanout import free_port
from tests.services import Postgres

CACHE = Path(__file__).parent / "cache"
CORPUS_DATABASE = "corpus"
SHARED_BUFFERS = "1GB"  # of the machine's 24 GB (5)


def sqlite_copy(key: str, load: Callable[[str], None], into: Path) -> tuple[str, bool]:
    """A SQLite database at ``into`` holding the corpus ``key`` (1): copied from the
    cache, or made by ``load(url)`` and then kept. Returns its URL and whether it
    was loaded in this run."""
    kept = CACHE / f"search-{key}.db"
    url = f"sqlite:///{into}"
    if kept.exists():
        shutil.copyfile(kept, into)
        return url, False
    load(url)
    CACHE.mkdir(exist_ok=True)
    partial = kept.with_suffix(".partial")
    # The backup API copies a consistent database whatever the WAL still holds.
    with (
        contextlib.closing(sqlite3.connect(into)) as source,
        contextlib.closing(sqlite3.connect(partial)) as target,
    ):
        source.backup(target)
    partial.rename(kept)  # (4)
    return url, True


@contextlib.contextmanager
def postgres_copy(key: str, load: Callable[[str], None]) -> Iterator[tuple[Postgres, str, bool]]:
    """A running PostgreSQL cluster whose database ``corpus`` holds the corpus ``key``
    (3): a copy of the kept cluster, or a fresh one loaded by ``load(url)`` and then
    kept. Yields the server, the corpus's URL and whether it was loaded in this run."""
    kept = CACHE / f"search-{key}.pgdata"
    server = Postgres(free_port())
    try:
        loaded = not kept.exists()
        if loaded:
            server.start()
            server.execute(f"CREATE DATABASE {CORPUS_DATABASE}")
            load(server.url(CORPUS_DATABASE))
            server.stop()
            CACHE.mkdir(exist_ok=True)
            partial = kept.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            _copy_owned(server.data, partial)
            partial.rename(kept)  # (4)
        else:
            shutil.rmtree(server.data)
            _copy_owned(kept, server.data)
        server.start()
        server.execute(f"ALTER SYSTEM SET shared_buffers = '{SHARED_BUFFERS}'")
        server.stop()  # shared memory is sized when the server starts
        server.start()
        yield server, server.url(CORPUS_DATABASE), loaded
    finally:
        server.remove()


def _copy_owned(source: Path, target: Path) -> None:
    # cp -a keeps the owner and modes the server insists on (3).
    subprocess.run(["cp", "-a", str(source), str(target)], check=True, timeout=600)
