"""The server's process settings, in-process."""

from __future__ import annotations

import gc

from feed.server import GC_THRESHOLD


def test_no_young_collection_walks_more_than_a_few_batches_however_many_streams_open() -> None:
    # Each open stream keeps a few dozen objects the collector tracks: tens of
    # thousands of streams opening are a million of them. A young collection walks
    # every object in the generations it collects, pausing every stream meanwhile.
    walked: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] < 2:
            walked.append(sum(len(gc.get_objects(g)) for g in range(info["generation"] + 1)))

    saved = gc.get_threshold()
    gc.collect()
    gc.set_threshold(*GC_THRESHOLD)
    gc.callbacks.append(seen)
    try:
        opened = [[] for _ in range(25 * GC_THRESHOLD[0])]
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*saved)
    assert len(opened) == 25 * GC_THRESHOLD[0]
    assert len(walked) >= 20
    assert max(walked) <= 4 * GC_THRESHOLD[0]
