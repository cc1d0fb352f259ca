"""The parts of the store, each owning one concept; ``feed/store.py`` puts them
together as the one ``Store`` callers use.

- ``engine.py``: engines, worker threads, and what a database's errors mean;
- ``log.py``: the event log, the one write context and the commit announcement;
- ``posts.py``: posts, new ones written in groups;
- ``lists.py``: lists of posts, a page's pinned section and its history;
- ``channels.py``: channels;
- ``keys.py``: idempotency keys;
- ``grants.py``: tokens, kiosk links, sessions, memberships and secrets;
- ``reading.py``: read positions and mentions.
"""
