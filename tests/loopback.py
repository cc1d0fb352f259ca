"""An HTTP server of a test's own on a loopback port: a fake of another server (one
that drips, refuses or answers wrongly), served from a thread while the test runs."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Loopback:
    """``handler`` served on 127.0.0.1 at ``url`` until ``close``. Its request threads
    are daemons: a handler a test leaves dripping does not hold the process."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], poll: float = 0.05) -> None:
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, args=(poll,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(5)
