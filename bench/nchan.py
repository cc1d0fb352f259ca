"""Nchan on Debian's nginx, run from ``bench/nchan.conf`` in a temporary prefix.

The template is filled with a loopback port and a prefix under the measurement's
temporary directory (pid file, error log, temporary paths), so the benchmark never
reads or changes /etc/nginx, and a system nginx, if one runs, is left alone.
nginx runs in the foreground (``daemon off``) as a child of the benchmark; the
master only supervises, so the numbers are read from its one worker process.
"""

from __future__ import annotations

import time
from pathlib import Path
from string import Template

NGINX = Path("/usr/sbin/nginx")
MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
TEMPLATE = Path(__file__).resolve().parent / "nchan.conf"
WORKER_TIMEOUT = 10.0
READY = ": hi"  # Nchan's EventSource opening comment


class NchanMissing(RuntimeError):
    """nginx or its Nchan module is not installed."""


def command(port: int, workdir: Path, workers: int = 1) -> list[str]:
    """Write the configuration under ``workdir`` and return the command that runs it."""
    missing = [str(path) for path in (NGINX, MODULE) if not path.exists()]
    if missing:
        raise NchanMissing(
            f"{', '.join(missing)} missing: `make bench` installs nginx and libnginx-mod-nchan"
        )
    prefix = workdir / "nchan"
    prefix.mkdir()
    # nginx's worker runs as an unprivileged user and must reach its temporary paths.
    workdir.chmod(0o755)
    prefix.chmod(0o755)
    conf = prefix / "nginx.conf"
    reuseport = " reuseport" if workers > 1 else ""
    text = Template(TEMPLATE.read_text()).substitute(
        module=MODULE, prefix=prefix, port=port, workers=workers, reuseport=reuseport
    )
    conf.write_text(text)
    # -e: start-up errors go to our log too, not to /var/log/nginx.
    return [str(NGINX), "-p", str(prefix), "-c", str(conf), "-e", str(error_log(workdir))]


def error_log(workdir: Path) -> Path:
    return workdir / "nchan" / "error.log"


def worker(master: int) -> int:
    """The pid of the master's one worker, once it has been forked."""
    children = Path(f"/proc/{master}/task/{master}/children")
    deadline = time.monotonic() + WORKER_TIMEOUT
    while time.monotonic() < deadline:
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.02)  # the master forks its worker right after binding
    raise TimeoutError(f"nginx {master} started no worker within {WORKER_TIMEOUT} s")
