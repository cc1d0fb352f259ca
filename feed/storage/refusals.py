"""What the store refuses: the errors a store call reports to its caller.

They live apart from the queries that raise them so that errors.py, which turns each
into its HTTP answer, and the command-line client, which imports errors.py through the
inputs it shares with the server, need no database library (engine.py, on unavailable,
not broken, and on unstorable values; storage/threads.py, on one level).
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the errors a store call reports to its caller."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, is too busy or refuses writes; the same call
    may work later."""

    UNREACHABLE = "The database is unavailable; try again shortly."
    BUSY = "The database is busy with other writers; try again shortly."
    READ_ONLY = (
        "The database refuses writes (it is read-only or its storage is failing); "
        "reading still works. Try again later."
    )
    FULL = (
        "The database is full: nothing new can be stored until space is freed; "
        "reading still works. Try again later."
    )

    def __init__(self, message: str = UNREACHABLE) -> None:
        super().__init__(message)


class Unstorable(StoreError):
    """The database driver refused a value it was given (text it cannot encode, a
    number out of range): the request's fault, never the database's (engine.py, on
    unstorable values)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"This cannot be stored: {reason}.")
        self.reason = reason


class ChannelNotFound(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"There is no channel named {name!r}.")
        self.name = name


class ChannelExists(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"A channel named {name!r} already exists.")
        self.name = name


class ChannelArchived(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"The channel {name!r} is archived; restore it to post there.")
        self.name = name


class PostNotFound(StoreError):
    def __init__(self, post_id: int) -> None:
        super().__init__(f"There is no post with id {post_id}.")
        self.post_id = post_id


class PostDeleted(StoreError):
    def __init__(self, post_id: int) -> None:
        super().__init__(f"Post {post_id} has been deleted.")
        self.post_id = post_id


class ReplyNotPinned(StoreError):
    def __init__(self, post_id: int) -> None:
        super().__init__(f"Post {post_id} is a reply: only top-level posts are pinned.")
        self.post_id = post_id


class NotAThread(StoreError):
    """A reply to a reply (storage/threads.py, on one level)."""

    def __init__(self, post_id: int, parent: int) -> None:
        super().__init__(
            f"Post {post_id} is a reply to post {parent}: reply to post {parent} instead."
        )
        self.post_id = post_id


class TokenNotFound(StoreError):
    def __init__(self, token_id: int) -> None:
        super().__init__(f"There is no token with id {token_id}.")
        self.token_id = token_id


class IdempotencyKeyReused(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"The Idempotency-Key {key!r} was already used for a different request; "
            "send a new key with a new request."
        )
        self.key = key
