"""py-spy against a running server, for the length of a ``with`` block.

``sampling(pid, path)`` records every thread of ``pid`` into ``path`` as collapsed stacks
(one ``frame;frame;... count`` line per stack), then reads them back into the share of
samples each function took: on its own (self) and with what it called (inclusive).

Rationale:

1. ``--nonblocking``: py-spy reads the process's memory without stopping it, so the
   server runs at its own pace; a stack caught mid-change is rare and only one sample.
2. Samples whose innermost frame is a wait (a worker thread waiting for work, a
   selector's ``select``) are left out of the shares: they are idle time, and
   leaving them in would make every busy item look smaller the idler the server was.
   uvloop's own loop is C, which py-spy does not see: its time, polling or handling
   sockets (httptools' parsing included), shows as the Python frame that started
   the loop, and stays in, since it is partly work.
3. py-spy is stopped with SIGINT, on which it writes what it has; a py-spy that is
   not installed makes the profile the run's error, not a silent gap.
"""

from __future__ import annotations

import collections
import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RATE = 200  # samples a second
STOP_TIMEOUT = 20.0
# Innermost frames that mean the thread was waiting, not working (2).
IDLE = re.compile(
    r"^(Condition\.wait|Event\.wait|Thread\._wait_for_tstate_lock) \(threading\.py"
    r"|^Queue\.get \(queue\.py|^\w*Selector\.select \(selectors\.py"
)
LINE = re.compile(r":\d+\)$")


class ProfileError(RuntimeError):
    """py-spy could not be run or did not write its profile."""


@dataclass(frozen=True, slots=True)
class Shares:
    """A profile read back: busy samples, and each function's share of them."""

    busy: int
    idle: int
    self_share: list[tuple[str, float]]
    inclusive: list[tuple[str, float]]

    def text(self, top: int = 25) -> str:
        lines = [f"busy samples: {self.busy} (left out as idle: {self.idle})", "", "self:"]
        lines += [f"{share:6.1%}  {name}" for name, share in self.self_share[:top]]
        lines += ["", "inclusive:"]
        lines += [f"{share:6.1%}  {name}" for name, share in self.inclusive[:top]]
        return "\n".join(lines)


def pyspy() -> str:
    found = Path(sys.executable).parent / "py-spy"
    chosen = str(found) if found.exists() else shutil.which("py-spy")
    if chosen is None:
        raise ProfileError("py-spy is not installed: it comes with the `bench` extra")
    return chosen


@contextlib.contextmanager
def sampling(pid: int, path: Path) -> Iterator[None]:
    """Record ``pid`` into ``path`` while the block runs."""
    cmd = [pyspy(), "record", "--pid", str(pid), "--rate", str(RATE), "--nonblocking"]
    cmd += ["--format", "raw", "--output", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # (3)
        try:
            _, err = proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ProfileError(f"py-spy did not stop within {STOP_TIMEOUT:.0f} s") from None
    if not path.exists():
        raise ProfileError(f"py-spy wrote no profile: {err.decode(errors='replace')[-2000:]}")


def _name(frame: str) -> str:
    return LINE.sub(")", frame)


def shares(path: Path) -> Shares:
    """The functions of the collapsed stacks in ``path``, busiest first (2)."""
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    busy = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_name(f) for f in stack.split(";")]
        if IDLE.match(frames[-1]):
            idle += int(count)
            continue
        busy += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            within[frame] += int(count)
    total = max(busy, 1)
    return Shares(
        busy,
        idle,
        [(name, n / total) for name, n in own.most_common()],
        [(name, n / total) for name, n in within.most_common()],
    )
