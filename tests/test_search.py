"""Search on both stores: the index follows posts, edits and deletes in their own
transaction, results rank by relevance then recency and page without ranking every
match, private channels never show, and a database from before search gets its
index."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event, inspect, text
from starlette.testclient import TestClient

from feed import schema
from feed.kiosk import KIOSK_POSTS
from feed.search import parse
from feed.search_values import Cursor, Filters, Results
from feed.storage import search as storage_search
from feed.store import Store, make_engine
from tests.conftest import Server
from tests.services import Postgres
from tests.test_cli import run_feed


@pytest.fixture
def database_url(each_database_url: str) -> str:
    return each_database_url


NO_FILTERS = Filters()
FIRST_PAGE = Cursor()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def find(
    store: Store,
    q: str | None,
    filters: Filters = NO_FILTERS,
    *,
    limit: int = 20,
    cursor: Cursor = FIRST_PAGE,
    private: list[str] | None = None,
) -> Results:
    query = None if q is None else parse(q)
    results: Results = run(
        store.search(query, filters, limit=limit, cursor=cursor, private=private)
    )
    return results


def ids(results: Results) -> list[int]:
    return [hit.post.id for hit in results.hits]


def post(store: Store, body: str, channel: str = "general", author: str = "ana") -> int:
    post_id: int = run(store.create_post(channel, author, body)).post.id
    return post_id


def test_words_phrases_prefixes_and_exclusions_find_their_posts(store: Store) -> None:
    lift = post(store, "The lift is out of order")
    deploy = post(store, "Deployment of the lift controller")
    outage = post(store, "Outage: the order queue is down")
    assert set(ids(find(store, "lift"))) == {lift, deploy}
    assert ids(find(store, '"out of order"')) == [lift]
    assert ids(find(store, "depl*")) == [deploy]
    assert ids(find(store, "order -outage")) == [lift]
    assert ids(find(store, "lift depl* -order")) == [deploy]
    assert ids(find(store, '"order out"')) == []
    assert outage


def test_a_word_with_a_dotted_capital_i_is_found_on_every_store(store: Store) -> None:
    izmir = post(store, "Ferry to İzmir at noon")
    post(store, "Ferry to Istanbul")
    for asked in ("İzmir", "İz*", '"to İzmir"', "ferry İzmir"):
        assert ids(find(store, asked)) == [izmir], asked


def test_a_word_typed_composed_or_decomposed_finds_both_on_every_store(store: Store) -> None:
    bodies = ["Meet at the café", "Meet at the cafe\u0301", "Meet at the cafe"]
    posted = [post(store, body) for body in bodies]
    for asked in ("café", "cafe\u0301", '"the CAFE\u0301"', "café*"):
        assert set(ids(find(store, asked))) == set(posted[:2]), asked
        # The live matcher agrees (search.py, on words).
        assert [parse(asked).matches(body) for body in bodies] == [True, True, False]


def test_results_rank_by_relevance_then_recency(store: Store) -> None:
    once = post(store, "lift " + "filler words here and there " * 6)
    often = post(store, "lift lift lift, the lift again")
    newer_once = post(store, "lift " + "filler words here and there " * 6)
    assert ids(find(store, "lift")) == [often, newer_once, once]


def test_edits_and_deletes_change_the_index_in_their_own_transaction(store: Store) -> None:
    post_id = post(store, "the lift is broken")
    run(store.edit_post(post_id, "the stairs are fine"))
    assert ids(find(store, "lift")) == []
    assert ids(find(store, "stairs")) == [post_id]
    run(store.delete_post(post_id))
    assert ids(find(store, "stairs")) == []


def test_filters_narrow_by_channel_author_dates_and_pins(store: Store) -> None:
    general = post(store, "lift news", author="ana")
    announced = post(store, "lift notice", channel="announcements", author="bo")
    run(store.set_pinned(announced, True))
    by = Filters
    assert ids(find(store, "lift", by(channels=("general",)))) == [general]
    assert ids(find(store, "lift", by(author="bo"))) == [announced]
    assert ids(find(store, "lift", by(pinned=True))) == [announced]
    soon = datetime.now(UTC) + timedelta(minutes=1)
    assert ids(find(store, "lift", by(before=soon, author="ana"))) == [general]
    assert ids(find(store, "lift", by(after=soon))) == []
    assert ids(find(store, None, by(author="bo"))) == [announced]
    reply = run(store.create_reply("general", general, "bo", "lift fixed")).post.id
    assert ids(find(store, "lift", by(replies=False))) == [announced, general]
    assert ids(find(store, "lift", by(replies=True))) == [reply]
    assert ids(find(store, None, by(author="bo", replies=False))) == [announced]


def test_private_channels_never_show_to_those_who_cannot_read_them(store: Store) -> None:
    run(store.create_channel("board", "Board", "", private=True))
    public = post(store, "lift budget")
    secret = post(store, "lift budget secret", channel="board")
    assert ids(find(store, "lift", private=[])) == [public]
    assert ids(find(store, "secret", private=[])) == []
    assert ids(find(store, None, private=[])) == [public]
    assert set(ids(find(store, "lift", private=["board"]))) == {public, secret}


def test_snippets_are_escaped_then_marked(store: Store) -> None:
    post(store, 'the <script>alert("x")</script> lift <mark>x</mark> &amp;')
    (hit,) = find(store, "lift").hits
    assert hit.snippet == (
        "the &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; <mark>lift</mark> "
        "&lt;mark&gt;x&lt;/mark&gt; &amp;amp;"
    )


def test_a_common_word_pages_through_windows_without_ranking_every_match(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_search, "WINDOW", 4)
    # Posts of one length, holding the word once, twice or three times.
    made = [post(store, "common " * (1 + n % 3) + "other " * (2 - n % 3)) for n in range(10)]
    seen: list[int] = []
    cursor = Cursor()
    pages = 0
    while True:
        page = find(store, "common", limit=3, cursor=cursor)
        seen += ids(page)
        pages += 1
        if page.next is None:
            break
        cursor = Cursor.parse(page.next.text)
    assert sorted(seen) == made and len(seen) == len(set(seen))
    # The newest window of four comes first, ranked within itself.
    assert set(seen[:4]) == set(made[-4:])
    assert seen[:4] == sorted(made[-4:], key=lambda n: (-(1 + (n - made[0]) % 3), -n))
    assert pages == 5


def every_page(store: Store, q: str, limit: int = 3) -> list[int]:
    return every_page_from(store, q, Cursor(), limit)


def test_paging_on_shows_every_post_once_while_shown_ones_go_or_change(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_search, "WINDOW", 6)
    # Lengths differ, so on SQLite every score hangs on the window's mean length.
    made = [post(store, "lift " + "x " * (n % 5)) for n in range(20)]
    edited: set[int] = set()
    seen: list[int] = []
    cursor = Cursor()
    for _ in range(30):
        page = find(store, "lift", limit=2, cursor=cursor)
        seen += ids(page)
        # Between pages, a neighbour deletes a post this reader was shown, and makes
        # another one shown far longer (its score, and the window's mean, change).
        shown = ids(page)
        if shown:
            run(store.delete_post(shown[0]))
        if len(shown) > 1:
            run(store.edit_post(shown[1], "lift " + "y " * 40))
            edited.add(shown[1])
        if page.next is None:
            break
        cursor = Cursor.parse(page.next.text)
    else:
        pytest.fail("the pages never ended")
    # Every post that did not change is shown once, whatever happened around it; an
    # edited one ranks anew, as it would in a new search, so it may come again.
    untouched = [n for n in seen if n not in edited]
    assert len(untouched) == len(set(untouched))
    assert sorted(set(seen)) == made


def test_a_shown_post_deleted_leaves_the_rest_of_its_window_in_place(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_search, "WINDOW", 3)
    made = [post(store, "lift" if n % 2 else "stairs") for n in range(12)]
    first = find(store, "lift", limit=2)
    assert ids(first) == [made[11], made[9]]
    assert first.next is not None
    # A shown post is deleted: the window keeps its place, so the post after it is
    # not skipped and the next window starts where this one ended.
    run(store.delete_post(made[9]))
    rest = every_page_from(store, "lift", first.next)
    assert rest == [made[7], made[5], made[3], made[1]]


def test_a_window_emptied_between_pages_does_not_end_the_search(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_search, "WINDOW", 3)
    made = [post(store, "lift") for _ in range(6)]
    first = find(store, "lift", limit=1)
    assert ids(first) == [made[5]]
    assert first.next is not None
    # Every post of the first window goes (deleted, or its channel made private).
    for n in made[3:]:
        run(store.delete_post(n))
    rest = every_page_from(store, "lift", Cursor.parse(first.next.text), limit=1)
    assert rest == [made[2], made[1], made[0]]


def test_a_post_edited_into_a_window_pushes_no_other_into_the_next(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_search, "WINDOW", 3)
    other = "lift " + "x " * 10
    made = [post(store, body) for body in (other, other, "lift lift lift", "stairs")]
    made += [post(store, other), post(store, other)]
    first = find(store, "lift", limit=1)
    assert ids(first) == [made[2]]
    assert first.next is not None
    # An older post within the window's ids is edited to match: the window holds one
    # more than it did, and none of its posts moves to the next window.
    run(store.edit_post(made[3], other))
    seen = ids(first) + every_page_from(store, "lift", Cursor.parse(first.next.text), limit=1)
    untouched = [n for n in seen if n != made[3]]
    assert len(untouched) == len(set(untouched)), seen
    assert sorted(set(seen)) == made


def every_page_from(store: Store, q: str, cursor: Cursor, limit: int = 3) -> list[int]:
    seen: list[int] = []
    while True:
        page = find(store, q, limit=limit, cursor=cursor)
        seen += ids(page)
        if page.next is None:
            return seen
        cursor = Cursor.parse(page.next.text)


@pytest.mark.parametrize(("dense", "pair_fetch"), [(1, 10**9), (1000, 10**9), (1000, 0)])
def test_a_phrase_or_prefix_read_in_two_steps_pages_exactly_as_in_one(
    store: Store, monkeypatch: pytest.MonkeyPatch, dense: int, pair_fetch: int
) -> None:
    monkeypatch.setattr(storage_search, "WINDOW", 4)
    # The phrase stands in some posts, its words apart in others, neither in the rest.
    bodies = [
        [
            "lift out of order",
            "out lift",
            "lift lift out now",
            "stairs",
            "lifted out",
            "the lift outside, out of order",
            "lift out lift out",
        ][n % 7]
        + " x" * (n % 3)
        for n in range(30)
    ]
    made = [post(store, body) for body in bodies]
    queries = [
        '"lift out"',
        "lif*",
        '"lift out" -now',
        "lift* out",
        '"out of order" lift',
        "lift-ou*",
        '"lift out" "out of"',
    ]
    monkeypatch.setattr(storage_search, "SPAN", 10**9)
    in_one = {q: every_page(store, q) for q in queries}
    for q in queries:
        wanted = parse(q)
        matching = {n for n, body in zip(made, bodies, strict=True) if wanted.matches(body)}
        assert sorted(in_one[q]) == sorted(matching) and len(in_one[q]) == len(matching)
    # Spans smaller than a window, walked on (dense) or left to the index.
    # Spans smaller than a window, walked on (dense) or left to the index of words, or
    # of pairs (on PostgreSQL, where a phrase's pairs are cheaper to look up).
    monkeypatch.setattr(storage_search, "SPAN", 3)
    monkeypatch.setattr(storage_search, "DENSE", dense)
    monkeypatch.setattr(storage_search, "PAIR_FETCH", pair_fetch)
    assert {q: every_page(store, q) for q in queries} == in_one


def test_a_phrase_below_the_newest_posts_is_found_by_its_word_pairs(
    postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_search, "WINDOW", 4)
    monkeypatch.setattr(storage_search, "SPAN", 3)
    store = Store.from_url(postgres.new_database())
    try:
        run(store.create_schema())
        # Both words in every post, side by side in a few, none of them the newest.
        together = [post(store, f"lift out {n}") for n in range(3)]
        for n in range(12):
            post(store, f"out {n} lift")
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(store._engine, "before_cursor_execute", seen)
        try:
            assert every_page(store, '"lift out"') == together[::-1]
        finally:
            event.remove(store._engine, "before_cursor_execute", seen)
    finally:
        store.close()
    # Below the newest posts, the posts are looked up by the pair, not by the words,
    # whose positions are then checked only in the posts the pair gave.
    below = [s for s in statements if "feed_word_pairs(posts.posts_search_vector) @@" in s]
    assert below
    assert all("ts_match_vq" in s and "posts_search_vector @@" not in s for s in below)


def test_a_database_at_the_filter_indexes_gets_the_index_of_pairs(database_url: str) -> None:
    bodies = ["the lift out of order", "out lift", "lift-out now"]
    database_at(database_url, "0012_search_indexes", [("ana", b) for b in bodies])
    store = Store.from_url(database_url)
    try:
        run(store.create_schema())
        if database_url.startswith("postgresql"):
            with store._engine.connect() as connection:
                paired = connection.execute(
                    text(
                        "SELECT id FROM posts WHERE feed_word_pairs(posts_search_vector)"
                        " @@ CAST(:pair AS tsquery) ORDER BY id"
                    ),
                    {"pair": "'lift out'"},
                ).scalars()
                # A hyphenated word's parts stand together, as they do when apart.
                assert list(paired) == [1, 3]
        assert sorted(ids(find(store, '"lift out"'))) == [1, 3]
    finally:
        store.close()
    # And back: the index of pairs goes.
    assert "posts_search_pairs" not in indexes_after_downgrade(database_url, "0012_search_indexes")


def test_a_filter_only_search_pages_by_recency(store: Store) -> None:
    made = [post(store, f"note {n}", author="bo") for n in range(5)]
    first = find(store, None, Filters(author="bo"), limit=2)
    assert ids(first) == made[:-3:-1]
    assert first.next is not None
    second = find(store, None, Filters(author="bo"), limit=2, cursor=first.next)
    assert ids(second) == [made[2], made[1]]


def test_a_database_made_before_search_gets_its_index(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(schema._config(connection), "0007")
        channel = connection.execute(
            text(
                "INSERT INTO channels (name, title, description, archived, private,"
                " announcement_only) VALUES ('old', 'Old', '', false, false, false)"
                " RETURNING id"
            )
        ).scalar_one()
        for n, body in enumerate(["the lift was fixed", "nothing here", "lift again"], 1):
            connection.execute(
                text(
                    "INSERT INTO posts (id, channel_id, author, body, html, created_at,"
                    " pinned, deleted) VALUES (:id, :c, 'ana', :b, '', :at, false, false)"
                ),
                {"id": n, "c": channel, "b": body, "at": datetime.now(UTC)},
            )
    engine.dispose()
    store = Store.from_url(database_url)
    try:
        run(store.create_schema())
        assert set(ids(find(store, "lift"))) == {1, 3}
        # New writes keep it in step after the upgrade.
        assert ids(find(store, "fixed")) == [1]
        run(store.edit_post(1, "the lift is fine"))
        assert ids(find(store, "fixed")) == []
    finally:
        store.close()


def test_a_database_at_read_state_gets_the_filter_indexes(database_url: str) -> None:
    database_at(database_url, "0011_read_state", [(a, "note") for a in ["ana", "bo", "ana"]])
    store = Store.from_url(database_url)
    try:
        run(store.create_schema())
        with store._engine.connect() as connection:
            indexes = {
                i["name"]: i["column_names"] for i in inspect(connection).get_indexes("posts")
            }
        assert indexes["ix_posts_author_id"] == ["author", "id"]
        assert indexes["ix_posts_channel_id_id"] == ["channel_id", "id"]
        assert "ix_posts_channel_id" not in indexes
        assert ids(find(store, None, Filters(author="ana"))) == [3, 1]
    finally:
        store.close()
    # And back: the index on the channel alone returns.
    names = indexes_after_downgrade(database_url, "0011_read_state")
    assert "ix_posts_channel_id" in names and "ix_posts_author_id" not in names


# -- the API -------------------------------------------------------------------------


def test_the_api_answers_ranked_results_with_snippets_and_a_cursor(client: TestClient) -> None:
    for n in range(3):
        made = client.post("/api/channels/general/posts", json={"body": f"lift note {n}"})
        assert made.status_code == 201
    first = client.get("/api/search", params={"q": "lift", "limit": "2"})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [r["post"]["body"] for r in page["results"]] == ["lift note 2", "lift note 1"]
    assert page["results"][0]["snippet"] == "<mark>lift</mark> note 2"
    rest = client.get("/api/search", params={"q": "lift", "cursor": page["next_cursor"]})
    assert [r["post"]["body"] for r in rest.json()["results"]] == ["lift note 0"]
    assert rest.json()["next_cursor"] is None


def test_the_api_hides_private_channels_from_those_who_cannot_read_them(
    client: TestClient,
) -> None:
    made = client.post("/api/channels", json={"name": "board", "title": "Board", "private": True})
    assert made.status_code == 201, made.text
    client.post("/api/channels/board/posts", json={"body": "secret lift budget"})
    client.post("/api/channels/general/posts", json={"body": "public lift budget"})
    assert len(client.get("/api/search", params={"q": "budget"}).json()["results"]) == 2
    del client.headers["authorization"]  # anonymous from here on
    found = client.get("/api/search", params={"q": "budget"}).json()
    assert [r["post"]["channel"] for r in found["results"]] == ["general"]
    assert client.get("/api/search", params={"q": "secret"}).json()["results"] == []
    asked = client.get("/api/search", params={"q": "secret", "channel": "board"})
    assert asked.status_code == 404


@pytest.mark.parametrize(
    ("params", "sentence"),
    [
        ({"q": 'lift "out'}, "never closed"),
        ({"q": "-lift"}, "not only words to leave out"),
        ({"q": "a*"}, "at least 2 letters"),
        ({"q": "lift\x00"}, "The search"),
        ({"q": "lift", "cursor": "nope"}, "cursor"),
        ({"q": "lift", "cursor": "9.3"}, "cursor"),
        ({"q": "lift", "cursor": "9.3.4." + "0" * 16 + ".3ff"}, "cursor"),
        # A score that is no number, and a window whose bottom is above its top.
        ({"q": "lift", "cursor": "9.3.4.7ff8000000000000." + "0" * 16}, "cursor"),
        ({"q": "lift", "cursor": "3.9.4." + "0" * 16 + "." + "0" * 16}, "cursor"),
        ({"q": "lift", "after": "yesterday"}, "'after' must be a date"),
        ({"q": "lift", "pinned": "maybe"}, "'pinned' must be one of"),
        ({"q": "lift", "limit": "1000"}, "'limit' must be between 1 and 100"),
    ],
)
def test_a_malformed_search_is_a_400_that_says_why(
    client: TestClient, params: dict[str, str], sentence: str
) -> None:
    answer = client.get("/api/search", params=params)
    assert answer.status_code == 400, answer.text
    assert sentence in answer.json()["error"]


# -- the pages -----------------------------------------------------------------------


def test_the_search_page_shows_marked_safe_snippets_with_links_to_each_post(
    client: TestClient,
) -> None:
    made = client.post("/api/channels/general/posts", json={"body": "lift <b>x</b> fixed"})
    post_id = made.json()["post"]["id"]
    client.post("/api/channels/general/posts", json={"body": "stairs only"})
    page = client.get("/search", params={"q": "lift"})
    assert page.status_code == 200
    assert "<mark>lift</mark> &lt;b&gt;x&lt;/b&gt; fixed" in page.text
    assert f'href="/channels/general#post-{post_id}"' in page.text
    assert "stairs" not in page.text
    assert 'hx-sync="this:replace"' in page.text and "delay:300ms" in page.text
    partial = client.get("/partials/search", params={"q": "lift"})
    assert partial.headers["hx-replace-url"] == "/search?q=lift"
    assert "<mark>lift</mark>" in partial.text and "<html" not in partial.text


def test_a_reply_found_by_search_opens_in_its_thread(client: TestClient) -> None:
    parent = client.post("/api/channels/general/posts", json={"body": "the lift plan"})
    parent_id = parent.json()["post"]["id"]
    made = client.post(f"/api/posts/{parent_id}/replies", json={"body": "lift fixed now"})
    assert made.status_code == 201, made.text
    reply_id = made.json()["post"]["id"]
    found = client.get("/api/search", params={"q": "lift"}).json()["results"]
    assert [(r["post"]["id"], r["link"]) for r in found] == [
        (reply_id, f"/posts/{parent_id}#post-{reply_id}"),
        (parent_id, f"/channels/general#post-{parent_id}"),
    ]
    page = client.get("/search", params={"q": "lift"}).text
    assert f'class="open" href="/posts/{parent_id}#post-{reply_id}"' in page
    assert f'class="open" href="/channels/general#post-{parent_id}"' in page
    assert f"#post-{reply_id}" not in page.replace(f"/posts/{parent_id}#post-{reply_id}", "")


def test_a_post_found_by_search_carries_its_reply_summary_as_listings_do(
    client: TestClient,
) -> None:
    parent = client.post("/api/channels/general/posts", json={"body": "the lift plan"})
    parent_id = parent.json()["post"]["id"]
    for body in ["lift fixed now", "stairs meanwhile", "gone"]:
        made = client.post(f"/api/posts/{parent_id}/replies", json={"body": body})
        assert made.status_code == 201, made.text
    client.delete(f"/api/posts/{made.json()['post']['id']}")
    author = parent.json()["post"]["author"]
    found = client.get("/api/search", params={"q": "lift"}).json()["results"]
    summaries = [(r["post"]["id"], r["post"]["replies"], r["post"]["repliers"]) for r in found]
    listed = client.get("/api/channels/general/posts").json()["posts"]
    (post,) = [p for p in listed if p["id"] == parent_id]
    assert (post["replies"], post["repliers"]) == (2, [author])
    # The reply found carries none; its parent the same summary as the listing's.
    assert summaries[1:] == [(parent_id, 2, [author])]
    assert summaries[0][1:] == (0, [])


def test_every_dashboard_has_a_search_box(client: TestClient) -> None:
    page = client.get("/channels/general")
    assert '<form class="bar-search" action="/search" method="get" role="search">' in page.text


def test_a_malformed_search_on_the_page_says_why_with_a_400(client: TestClient) -> None:
    page = client.get("/search", params={"q": '"open'})
    assert page.status_code == 400
    assert "never closed" in page.text


@pytest.mark.parametrize(
    ("after", "said"),
    [
        ("yesterday", "must be a date or time such as 2026-11-30"),
        ("9999-12-31", "must be a date between 0002-01-01 and 9998-12-31"),
        ("0001-01-01", "must be a date between 0002-01-01 and 9998-12-31"),
    ],
)
def test_a_date_filter_that_is_no_date_or_out_of_range_says_which(
    client: TestClient, after: str, said: str
) -> None:
    answer = client.get("/api/search", params={"q": "x", "after": after})
    assert answer.status_code == 400
    assert said in answer.json()["error"]


@pytest.mark.parametrize("q", ["\u202egnp.exe lanigiro", "a\x01b", "a\x85b"])
def test_a_refused_search_keeps_its_query_out_of_the_pages_title(
    client: TestClient, q: str
) -> None:
    """A tab's title shows no text the search refused: a crafted link would otherwise
    reverse it or put control characters in it."""
    page = client.get("/search", params={"q": q})
    assert page.status_code == 400
    title = re.search(r"<title>(.*?)</title>", page.text, re.S)
    assert title is not None and title.group(1) == "Search · feed"


def test_the_kiosk_with_a_search_shows_and_streams_only_matching_posts(
    client: TestClient,
) -> None:
    client.post("/api/channels/general/posts", json={"body": "deploy done"})
    client.post("/api/channels/general/posts", json={"body": "lunch is here"})
    page = client.get("/kiosk", params={"q": "deploy"})
    assert page.status_code == 200
    assert "deploy done" in page.text and "lunch" not in page.text
    assert "q=deploy" in page.text and 'data-search="deploy"' in page.text
    assert "post-unmatched" in page.text
    refetched = client.get("/partials/kiosk", params={"q": "deploy"})
    assert "deploy done" in refetched.text and "lunch" not in refetched.text
    assert client.get("/kiosk", params={"q": "-deploy"}).status_code == 400


def test_a_search_kiosk_keeps_its_pinned_matches_above_thirty_newer_ones(
    client: TestClient,
) -> None:
    """Pinned first, then the newest, 30 in all, as every kiosk and as feed-lists.js keeps
    the live list: a pinned match older than the 30 newest is still shown (below the
    headline, as on every kiosk)."""
    made = [
        client.post("/api/channels/general/posts", json={"body": f"deploy {n}"}).json()
        for n in range(KIOSK_POSTS + 1)
    ]
    pinned = made[0]["post"]["id"]
    assert client.post(f"/api/posts/{pinned}/pin").status_code == 200
    client.post("/api/channels/general/posts", json={"body": "lunch, pinned"})
    newest = [m["post"]["id"] for m in made[-(KIOSK_POSTS - 1) :]]
    for path in ("/kiosk", "/partials/kiosk"):
        shown = client.get(path, params={"q": "deploy"}).text
        ids = [int(n) for n in re.findall(r'<article id="post-(\d+)"', shown)]
        # In the order shown: the headline, the pinned match, then the rest.
        assert ids == [newest[-1], pinned, *reversed(newest[:-1])], path


# -- the CLI -------------------------------------------------------------------------


def test_the_cli_prints_results_best_first_in_one_channel(server: Server) -> None:
    server.post("lift maintenance on friday", channel="announcements")
    server.post("lift maintenance chat", channel="general")
    long = "the lift maintenance log & notes kept by the caretaker <b>daily</b>"
    server.post(long, channel="announcements")
    found = run_feed(
        "search", "lift maintenance", "--channel", "announcements", "--url", server.url
    )
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("#announcements post ") for line in lines)
    assert lines[0].endswith(": lift maintenance on friday")
    assert lines[1].endswith(f": {long}")
    parent = lines[0].split()[2]
    made = server.client.post(
        f"/api/posts/{parent}/replies", json={"body": "lift maintenance done"}
    )
    assert made.status_code == 201, made.text
    reply = made.json()["post"]["id"]
    again = run_feed("search", "maintenance done", "--url", server.url)
    assert again.stdout.startswith(f"#announcements reply {reply} in thread {parent} by "), (
        again.stdout
    )
    refused = run_feed("search", '"lift', "--url", server.url)
    assert refused.returncode != 0
    assert "never closed" in refused.stderr


def indexes_after_downgrade(database_url: str, revision: str) -> set[str]:
    """The names of the posts table's indexes once the schema is taken back to ``revision``."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            command.downgrade(schema._config(connection), revision)
            return {i["name"] for i in inspect(connection).get_indexes("posts")}
    finally:
        engine.dispose()


def database_at(database_url: str, revision: str, posts: list[tuple[str, str]]) -> list[int]:
    """A database left at ``revision`` (0011 or later), with a channel ``old`` and the
    ``(author, body)`` posts in it, made as that schema made them: their ids."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            command.upgrade(schema._config(connection), revision)
            channel = connection.execute(
                text(
                    "INSERT INTO channels (name, title, description, archived, private,"
                    " announcement_only, replies) VALUES ('old', 'Old', '', false, false,"
                    " false, true) RETURNING id"
                )
            ).scalar_one()
            return [
                connection.execute(
                    text(
                        "INSERT INTO posts (channel_id, author, body, html, created_at,"
                        " pinned, deleted) VALUES (:c, :a, :b, '', :at, false, false)"
                        " RETURNING id"
                    ),
                    {"c": channel, "a": author, "b": body, "at": datetime.now(UTC)},
                ).scalar_one()
                for author, body in posts
            ]
    finally:
        engine.dispose()
