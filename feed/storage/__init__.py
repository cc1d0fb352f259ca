"""The parts of the store, each owning one concept; ``feed/store.py`` puts them
together as the one ``Store`` callers use.

- ``engine.py``: engines, worker threads, and what a database's errors mean;
- ``log.py``: the event log, the one write context and the commit announcement;
- ``announcements.py``: what each commit changed, told to the store's listeners;
- ``posts.py``: a post, its edits, pins and deletion, and its thread's pages;
- ``new_posts.py``: new posts and replies, written in groups (``rows.py`` their rows;
  ``sqlite.py`` and ``postgres.py`` each store's own statements, ``loop_writer.py``
  PostgreSQL's writes from the event loop);
- ``lists.py``: lists of posts, a page's pinned section and its history;
- ``threads.py``: replies and their threads' summaries;
- ``history.py``: the log read back for a reader (replays), and what a reader may see;
- ``reactions.py`` and ``tallies.py``: reactions, and their counts;
- ``search.py``: the search index and its queries;
- ``channels.py``: channels;
- ``keys.py``: idempotency keys;
- ``grants.py``: tokens, kiosk links, sessions, memberships and secrets;
- ``reading.py``: read positions and mentions;
- ``high_water.py``: the newest event seen committed, and ids skipped past it after a
  restore;
- ``refusals.py``: what the store refuses, and why.
"""
