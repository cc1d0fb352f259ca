"""The parts of the store, each owning one concept; ``feed/store.py`` puts them
together as the one ``Store`` callers use.

- ``engine.py``: engines, worker threads, and what a database's errors mean;
- ``log.py``: the event log, the one write context and the commit announcement;
- ``posts.py``: posts, new ones written in groups;
- ``channels.py``: channels;
- ``keys.py``: idempotency keys;
- ``grants.py``: tokens, kiosk links, sessions, memberships and secrets;
- ``reading.py``: read positions and mentions.
"""
