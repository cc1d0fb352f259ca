"""``python -m bench search``: search latency, index size and write cost on each store,
and live searches against the plain stream.

Rationale:

1. The corpus is made here, with no download: sentences from a fixed vocabulary of
   made-up words whose frequencies follow a Zipf law (rank r is drawn in proportion
   to 1/r^1.07, as words in English text are), from a fixed seed, so every run
   searches the same text. It is loaded straight into ``posts`` with the index in
   place (the triggers on SQLite, the GIN index on PostgreSQL): the index is built as
   the migration would keep it, without a million requests.
2. The query mix is fixed per kind: the commonest words (page 1 must come from one
   window, not from every match: storage/search.py, on windows), rare words (drawn
   from the tail of the vocabulary), two-word phrases taken from the corpus, prefixes
   of mid-frequency words, and a filter-only search (one author). Each kind runs
   ``QUERIES`` different queries through ``Store.search``, in the process, so the
   figure is the store's and the snippet's, not HTTP's.
3. Write cost: the same posts written through ``Store.create_post`` (the group
   commit, as the API writes) into two fresh databases of the same store, one with the
   index and one with it dropped, alternately in the same run, ``WRITE_ROUNDS`` times
   each way; the median of each is compared (single rounds vary by a third on a
   shared machine).
4. Live searches: one server; ``SUBSCRIBERS`` streams spread over ``DISTINCT``
   searches, then as many plain streams, each while posts go in at ``RATE`` a second;
   each post carries its send time, and each delivery's latency is taken when its
   event is read. The searches are common words, so most posts match several.
5. The loaded corpus is kept between runs (bench/corpora.py): generating a million
   posts takes seconds, indexing them as they load takes minutes. A kept corpus is
   brought up to the current schema and, on PostgreSQL, analysed again, so the
   planner knows the columns a new migration indexes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import corpora, fanout
from bench.report import percentile
from feed.search import parse
from feed.search_values import Cursor, Filters
from feed.store import Store

SEED = 18
VOCABULARY = 30_000
ZIPF = 1.07
WORDS_PER_POST = (6, 30)
AUTHORS = 500
QUERIES = 40  # of each kind
BATCH = 5_000  # posts loaded per transaction
WRITES = 1_500  # posts per write-throughput round
WRITE_CONCURRENCY = 16
WRITE_ROUNDS = 9  # each way, alternately; the median is reported
SUBSCRIBERS = 1_000
DISTINCT = 100
RATE = 100.0  # posts a second
LIVE_SECONDS = 10.0
# Bump when the corpus's text changes in a way its parameters do not say (5).
CORPUS_VERSION = 1

_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["ai", "ou", "ea"]


def vocabulary() -> list[str]:
    """``VOCABULARY`` distinct made-up words, the same every run; index = rank - 1."""
    rng = random.Random(SEED)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < VOCABULARY:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))
        if word not in seen and len(word) >= 2:
            seen.add(word)
            words.append(word)
    # Short words are common ones, as in any language (a stable sort keeps the rest).
    return sorted(words, key=len)


class Corpus:
    """Sentences drawn from the vocabulary by its Zipf weights (1)."""

    def __init__(self, seed: int = SEED) -> None:
        self.words = vocabulary()
        weights = [1 / rank**ZIPF for rank in range(1, len(self.words) + 1)]
        self.cumulative = list(itertools.accumulate(weights))
        self.rng = random.Random(seed)

    def body(self) -> str:
        count = self.rng.randint(*WORDS_PER_POST)
        words = self.rng.choices(self.words, cum_weights=self.cumulative, k=count)
        words[0] = words[0].capitalize()
        return " ".join(words) + "."

    def rows(self, posts: int) -> Iterator[tuple[Any, ...]]:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        for n in range(posts):
            at = start + timedelta(seconds=n * 7)
            author = f"user{self.rng.randrange(AUTHORS)}"
            yield (1 + n % 2, author, self.body(), "", at, False, False)


def query_mix(corpus: Corpus) -> dict[str, list[tuple[str | None, Filters]]]:
    """``QUERIES`` of each kind (2)."""
    rng = random.Random(SEED + 1)
    words = corpus.words
    phrases: list[str] = []
    while len(phrases) < QUERIES:
        sentence = corpus.body().rstrip(".").lower().split()
        at = rng.randrange(len(sentence) - 1)
        phrases.append(f'"{sentence[at]} {sentence[at + 1]}"')
    middle = [w for w in words[200:5000] if len(w) >= 4]
    prefixes = [w[:3] for w in rng.sample(middle, QUERIES)]
    none = Filters()
    return {
        "common word": [(w, none) for w in words[:QUERIES]],
        "rare word": [(w, none) for w in rng.sample(words[20_000:], QUERIES)],
        "phrase": [(p, none) for p in phrases],
        "prefix": [(f"{p}*", none) for p in prefixes[:QUERIES]],
        "filter only": [
            (None, Filters(author=f"user{rng.randrange(AUTHORS)}", channels=("general",)))
            for _ in range(QUERIES)
        ],
    }


# -- loading ---------------------------------------------------------------------------


def load_sqlite(url: str, corpus: Corpus, posts: int) -> float:
    """Load ``posts`` rows straight into the database, and into the search index;
    returns seconds taken."""
    started = time.monotonic()
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        rows = corpus.rows(posts)
        while chunk := list(itertools.islice(rows, BATCH)):
            with db:
                db.executemany(
                    "INSERT INTO posts (channel_id, author, body, html, created_at, pinned,"
                    " deleted) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(*r[:4], r[4].isoformat(sep=" "), *r[5:]) for r in chunk],
                )
                # The chunk's search entries, as the group commit adds a group's.
                last = db.execute("SELECT last_insert_rowid()").fetchone()[0]
                db.execute(
                    "INSERT INTO posts_search(rowid, body)"
                    " SELECT id, body FROM posts WHERE id BETWEEN ? AND ?",
                    (last - len(chunk) + 1, last),
                )
        db.execute("PRAGMA optimize")
    finally:
        db.close()
    return time.monotonic() - started


def load_postgres(url: str, corpus: Corpus, posts: int) -> float:
    import psycopg

    started = time.monotonic()
    with (
        psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db,
        db.cursor() as cur,
        cur.copy(
            "COPY posts (channel_id, author, body, html, created_at, pinned, deleted) FROM STDIN"
        ) as copy,
    ):
        for row in corpus.rows(posts):
            copy.write_row(row)
    # As autovacuum would after such a load: the GIN index's pending list merged, and
    # the planner told how common each word is.
    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as db:
        db.execute("VACUUM ANALYZE posts")
    return time.monotonic() - started


def sizes(store: Store, url: str) -> dict[str, int]:
    """Bytes of the posts table and of the search index."""
    if url.startswith("sqlite"):
        lite = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            found = dict(
                lite.execute(
                    "SELECT CASE WHEN name LIKE 'posts_search%' THEN 'index' ELSE 'posts' END,"
                    " SUM(pgsize) FROM dbstat WHERE name = 'posts' OR name LIKE 'posts_search%'"
                    " GROUP BY 1"
                ).fetchall()
            )
        finally:
            lite.close()
        return {"posts_bytes": found["posts"], "index_bytes": found["index"]}
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db:
        # The generated column lives in the table: its share is counted as index.
        posts, index, pairs = db.execute(
            "SELECT pg_table_size('posts') - sum(pg_column_size(posts_search_vector)),"
            " pg_relation_size('posts_search') + sum(pg_column_size(posts_search_vector)),"
            " pg_relation_size('posts_search_pairs')"
            " FROM posts"
        ).fetchone() or (0, 0, 0)
    # The index of word pairs (storage/search.py, on phrases by their word pairs) is
    # counted as index too, and shown apart.
    return {
        "posts_bytes": int(posts),
        "index_bytes": int(index) + int(pairs),
        "pairs_index_bytes": int(pairs),
    }


# -- measuring -------------------------------------------------------------------------


async def latencies(store: Store, corpus: Corpus) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for kind, queries in query_mix(corpus).items():
        times, results = [], []
        for q, filters in queries:
            query = None if q is None else parse(q)
            started = time.perf_counter()
            page = await store.search(query, filters, limit=20, cursor=Cursor())
            times.append((time.perf_counter() - started) * 1000)
            results.append(len(page.hits))
        found[kind] = {
            "p50_ms": round(percentile(sorted(times), 0.50), 2),
            "p95_ms": round(percentile(sorted(times), 0.95), 2),
            "mean_results": round(statistics.mean(results), 1),
        }
    return found


async def write_rate(url: str, indexed: bool, corpus: Corpus) -> float:
    """Posts a second through ``Store.create_post`` into a fresh database (3)."""
    store = Store.from_url(url)
    try:
        await store.create_schema()
        if not indexed:
            await drop_index(store, url)
        gate = asyncio.Semaphore(WRITE_CONCURRENCY)
        bodies = [corpus.body() for _ in range(WRITES)]

        async def one(body: str) -> None:
            async with gate:
                await store.create_post("general", "bench", body)

        started = time.monotonic()
        await asyncio.gather(*(one(body) for body in bodies))
        return WRITES / (time.monotonic() - started)
    finally:
        store.close()


async def drop_index(store: Store, url: str) -> None:
    from sqlalchemy import text

    statements = (
        # The group commit still adds its posts' entries: to a plain table in the FTS
        # index's place, which costs a copy of the text and no index.
        [f"DROP TRIGGER posts_search_{op}" for op in ("update", "delete")]
        + ["DROP TABLE posts_search", "CREATE TABLE posts_search (body TEXT)"]
        if url.startswith("sqlite")
        else ["DROP INDEX posts_search", "ALTER TABLE posts DROP COLUMN posts_search_vector"]
    )
    with store._engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


async def one_store(name: str, url: str, loaded: float | None, fresh: list[str]) -> dict[str, Any]:
    """The figures of one store whose database at ``url`` holds the corpus, loaded in
    this run in ``loaded`` seconds or (None) copied from the cache (5)."""
    corpus = Corpus()
    store = Store.from_url(url)
    try:
        # A kept corpus is brought up to the current schema (bench/corpora.py, 2).
        await store.create_schema()
        if url.startswith("postgresql"):
            await analyse(url)
        print(f"{name}: searching ...", flush=True)
        found = await latencies(store, corpus)
        common = parse(corpus.words[0])
        matches = await count_matches(store, url, common.fts5(), common.tsquery())
        size = sizes(store, url)
    finally:
        store.close()
    rates: dict[str, list[float]] = {"with": [], "without": []}
    for round_urls in zip(fresh[::2], fresh[1::2], strict=True):
        rates["without"].append(await write_rate(round_urls[0], False, Corpus(SEED + 2)))
        rates["with"].append(await write_rate(round_urls[1], True, Corpus(SEED + 2)))
    with_index, without = statistics.median(rates["with"]), statistics.median(rates["without"])
    return {
        "posts": corpus_posts(url),
        "load_seconds": None if loaded is None else round(loaded, 1),
        "latency": found,
        "common_word_matches": matches,
        **size,
        "index_to_posts": round(size["index_bytes"] / max(1, size["posts_bytes"]), 2),
        "writes_per_s_with_index": round(with_index),
        "writes_per_s_without_index": round(without),
        "write_cost": round(1 - with_index / without, 3),
        "write_rounds": {k: [round(r) for r in v] for k, v in rates.items()},
    }


def corpus_key(posts: int) -> str:
    """Everything the loaded corpus is made from (bench/corpora.py, 1)."""
    low, high = WORDS_PER_POST
    return f"{posts}-s{SEED}-v{VOCABULARY}-z{ZIPF}-w{low}_{high}-a{AUTHORS}-c{CORPUS_VERSION}"


def loader(name: str, posts: int, took: list[float]) -> Any:
    """What loads ``posts`` into a new database of store ``name``, in a thread of its
    own, the time it took appended to ``took``."""

    def load(url: str) -> None:
        store = Store.from_url(url)
        try:
            asyncio.run(store.create_schema())
        finally:
            store.close()
        print(f"{name}: loading {posts:,} posts ...", flush=True)
        into = load_sqlite if url.startswith("sqlite") else load_postgres
        took.append(into(url, Corpus(), posts))
        print(f"{name}: loaded in {took[-1]:.0f} s", flush=True)

    return load


async def analyse(url: str) -> None:
    """The planner told again how common each value is, after the migrations (5)."""
    import psycopg

    def run() -> None:
        with psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        ) as db:
            db.execute("ANALYZE posts")

    await asyncio.to_thread(run)


def corpus_posts(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM posts")).scalar_one())
    finally:
        engine.dispose()


async def count_matches(store: Store, url: str, fts5: str, tsquery: str) -> int:
    from sqlalchemy import text

    with store._engine.connect() as connection:
        if url.startswith("sqlite"):
            sql = "SELECT count(*) FROM posts_search WHERE posts_search MATCH :q"
            return int(connection.execute(text(sql), {"q": fts5}).scalar_one())
        sql = (
            "SELECT count(*) FROM posts WHERE posts_search_vector"
            " @@ to_tsquery('simple'::regconfig, :q)"
        )
        return int(connection.execute(text(sql), {"q": tsquery}).scalar_one())


# -- live searches ---------------------------------------------------------------------

MARK = re.compile(r"zqmark(\d+)x")


async def live(searching: bool, seconds: float) -> dict[str, float]:
    """Delivery latency of ``SUBSCRIBERS`` streams, searching or plain, at ``RATE`` (4)."""
    corpus = Corpus(SEED + 3)
    queries = corpus.words[:DISTINCT]
    async with contextlib.AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="feed-search-")))
        port = fanout.free_port()
        server = await fanout.start_server(stack, "feed", port, workdir)
        delays: list[float] = []
        sent: dict[int, float] = {}
        readers = []
        ready = 0
        opened = asyncio.Event()

        async def reader(n: int) -> None:
            nonlocal ready
            q = f"&q={queries[n % DISTINCT]}" if searching else ""
            r, w = await asyncio.open_connection(fanout.HOST, port)
            w.write(f"GET /events?format=json{q} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            try:
                await r.readuntil(b"\r\n\r\n")
                ready += 1
                if ready == SUBSCRIBERS:
                    opened.set()
                while line := await r.readline():
                    if line.startswith(b"data: "):
                        found = MARK.search(line.decode())
                        if found and int(found.group(1)) in sent:
                            delays.append((time.monotonic() - sent[int(found.group(1))]) * 1000)
            finally:
                w.close()

        for n in range(SUBSCRIBERS):
            readers.append(asyncio.create_task(reader(n)))
        await asyncio.wait_for(opened.wait(), 60)
        posting = []
        began = time.monotonic()
        for n in range(int(seconds * RATE)):
            body = f"{corpus.body()} zqmark{n}x"

            def stamped(n: int = n, body: str = body) -> str:
                sent[n] = time.monotonic()
                return body

            posting.append(asyncio.create_task(fanout.post(port, stamped, server.token)))
            # On schedule, whatever the posts before took.
            await asyncio.sleep(max(0.0, began + (n + 1) / RATE - time.monotonic()))
        await asyncio.gather(*posting)
        await asyncio.sleep(3)  # the last deliveries: a bench, not a test
        for task in readers:
            task.cancel()
    delays.sort()
    return {
        "deliveries": len(delays),
        "p50_ms": round(percentile(delays, 0.50), 1),
        "p99_ms": round(percentile(delays, 0.99), 1),
    }


async def run(posts: int, stores: list[str], seconds: float) -> dict[str, Any]:
    document: dict[str, Any] = {"stores": {}}
    key = corpus_key(posts)
    for name in stores:
        took: list[float] = []
        with contextlib.ExitStack() as stack:
            if name == "sqlite":
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="feed-s-")))
                url, _ = await asyncio.to_thread(
                    corpora.sqlite_copy, key, loader(name, posts, took), tmp / "corpus.db"
                )
                fresh = [f"sqlite:///{tmp / f'w{n}.db'}" for n in range(2 * WRITE_ROUNDS)]
            else:
                postgres, url, _ = await asyncio.to_thread(
                    stack.enter_context,
                    corpora.postgres_copy(key, loader(name, posts, took)),
                )
                fresh = [postgres.new_database() for _ in range(2 * WRITE_ROUNDS)]
            loaded = took[0] if took else None
            document["stores"][name] = await one_store(name, url, loaded, fresh)
            print(json.dumps({name: document["stores"][name]}, indent=1), flush=True)
    if seconds > 0:
        plain = await live(False, seconds)
        searching = await live(True, seconds)
        document["live"] = {
            "subscribers": SUBSCRIBERS,
            "distinct_searches": DISTINCT,
            "rate": RATE,
            "seconds": seconds,
            "plain": plain,
            "search": searching,
            "p99_ratio": round(searching["p99_ms"] / max(0.1, plain["p99_ms"]), 2),
        }
        print(json.dumps(document["live"], indent=1), flush=True)
    return document
