"""What a page's JavaScript keeps alive, counted in a heap snapshot.

A page left open for days must not keep anything for each event it applies. Whether it
does shows as growth between two moments of the page; this module says what to compare.

Rationale:

1. Counted, not weighed. ``JSHeapUsedSize`` hardly sees a page that keeps every message
   it is handed: the string an EventSource passes on is an external string (Blink owns
   its characters), of which V8's heap holds only a header of a few dozen bytes. A kiosk
   that kept all its messages (2 KB each) grew that figure by less than a clean kiosk
   grows while it warms up. A heap snapshot lists every value however it is stored, so
   a page that keeps something per event has at least one more value per event.
2. JavaScript values only. Compiled code, hidden classes ("object shape") and V8's own
   entries ("hidden", "synthetic") grow while a page warms up and its code is optimised;
   Blink's objects ("native": DOM nodes, style, caches) come and go with the browser's
   caches, and DOM nodes are counted on their own (the Performance domain's ``Nodes``).
   What is left (objects, closures, arrays, strings, numbers and the rest in
   ``JS_VALUES``) is what a script can hold on to, and is flat on a page that keeps
   nothing.
3. A rate between two moments after warm-up, in values and bytes per event. Code and
   caches settle over the first few hundred events; a leak grows with every event, so
   it shows in any later window as a rate, while a bound on total growth since the
   start mixes the leak with the warm-up.
4. The snapshot is the collection. V8 collects all it can before it writes one, so what
   it lists is alive, with no ``collectGarbage`` of ours to trust first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from playwright.sync_api import Page

# V8's snapshot node types that a script's values are stored as (2).
JS_VALUES = frozenset(
    {"object", "closure", "array", "string", "concatenated string", "sliced string"}
    | {"number", "regexp", "symbol", "bigint"}
)


@dataclass(frozen=True)
class Census:
    """The JavaScript values alive in a page, and their own sizes in bytes."""

    values: int
    value_bytes: int


def census(page: Page) -> Census:
    """Count ``page``'s live JavaScript values in a heap snapshot (about 0.3 s)."""
    cdp = page.context.new_cdp_session(page)
    chunks: list[str] = []
    cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))
    try:
        cdp.send("HeapProfiler.enable")
        # Chromium sends every chunk before it answers the command.
        cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
    finally:
        cdp.detach()
    return count_values(json.loads("".join(chunks)))


def count_values(snapshot: dict[str, Any]) -> Census:
    """The JavaScript values (``JS_VALUES``) of a parsed ``.heapsnapshot``."""
    meta = snapshot["snapshot"]["meta"]
    fields: list[str] = meta["node_fields"]
    names: list[str] = meta["node_types"][fields.index("type")]
    width, kind, size = len(fields), fields.index("type"), fields.index("self_size")
    nodes: list[int] = snapshot["nodes"]
    values = value_bytes = 0
    for at in range(0, len(nodes), width):
        if names[nodes[at + kind]] in JS_VALUES:
            values += 1
            value_bytes += nodes[at + size]
    return Census(values, value_bytes)


def growth(what: str, before: int, after: int, events: int, limit: float) -> str | None:
    """A sentence if ``what`` grew by more than ``limit`` per event over ``events``."""
    rate = (after - before) / events
    if rate <= limit:
        return None
    return (
        f"{what} grew by {after - before:,} over {events:,} events, from {before:,} to "
        f"{after:,}: {rate:.2f} per event, more than the {limit:g} allowed"
    )
