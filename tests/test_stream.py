"""The stream against a real uvicorn: delivery, formats, resume, resync, heartbeats."""

from __future__ import annotations

import json

from tests.conftest import Server
from tests.sse import SSEClient


def test_post_arrives_with_id_event_and_json_data(server: Server) -> None:
    with SSEClient(server.port, params={"format": "json"}) as stream:
        stream.wait_for(lambda s: any(m.retry for m in s.messages))
        created = server.post("hello **world**")
        (event,) = stream.wait_events(1)
    assert event.id == str(created["event_id"])
    assert event.event == "post-created"
    payload = json.loads(event.data)
    assert payload["post"]["body"] == "hello **world**"
    assert payload["post"]["id"] == created["post"]["id"]
