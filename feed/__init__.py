"""feed: a real-time updates feed over Server-Sent Events."""

__version__ = "0.1.0"
