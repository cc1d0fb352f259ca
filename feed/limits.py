"""Limits the store and the requests it is sent must agree on.

They are kept apart from both so that every layer reads the same number, and the
command-line client, which checks its input by the server's rules before sending it,
can do so without importing the database library.
"""

from __future__ import annotations

# The largest id a post can have: the posts table's key is a 32-bit INTEGER on
# PostgreSQL (migration 0001), so a larger number is no post on any store.
MAX_POST_ID = 2**31 - 1

# Posts in one batch of the API; the store writes as many in one group, one transaction
# (storage/new_posts.py, on batches).
MAX_BATCH_ITEMS = 1000

# Results on one page of a search (search_params.py; the default is FEED_PAGE_SIZE, as
# for other lists). ``feed search --limit`` checks it before asking.
MAX_SEARCH_PAGE = 100
