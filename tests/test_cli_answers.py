"""``feed post --ndjson``'s report of a batch, from whichever answer the server gives:
the preference for a minimal one (RFC 7240) may be ignored, by an older server or by a
proxy that drops the header, and the whole post comes back instead."""

from __future__ import annotations

from feed.client import Client
from feed.post_command import _said
from feed.post_lines import Line
from tests.conftest import Server


def test_a_batch_answered_in_full_is_reported_as_a_minimal_one_is(server: Server) -> None:
    client = Client(server.url, server.token("ada"))
    parent = server.post("the plan")["post"]["id"]
    lines = [
        Line(1, {"channel": "general", "body": "a post"}),
        Line(2, {"parent": parent, "body": "a reply"}),
    ]
    minimal = client.post_batch(lines, minimal=True)
    full = client.post_batch(lines, minimal=False)  # the preference not applied
    assert "post" in full[0][1] and "post" not in minimal[0][1]
    said = [_said(result, line) for (_, result), line in zip(full, lines, strict=True)]
    ids = [result["post"]["id"] for _, result in full]
    events = [result["event_id"] for _, result in full]
    assert said == [
        f"posted to #general: post {ids[0]}, event {events[0]}",
        f"replied to post {parent} in #general: post {ids[1]}, event {events[1]}",
    ]
    # The minimal answer's report, for the posts written first, reads the same.
    first = [_said(result, line) for (_, result), line in zip(minimal, lines, strict=True)]
    assert [s.split(":")[0] for s in first] == [s.split(":")[0] for s in said]
