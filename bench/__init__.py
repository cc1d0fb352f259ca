"""The fan-out benchmark behind ``make bench``: feed against a naive baseline.

Modules:

- ``client``: the load client, a separate process holding N subscribers on raw sockets;
- ``baseline``: the naive server (a queue per client, sse-starlette), also its own process;
- ``fanout``: starts a server and the clients, posts, and collects one measurement;
- ``report``: percentiles, the table, the JSON file and the target check;
- ``__main__``: the command line.
"""
