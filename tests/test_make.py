"""What ``make run`` decides before it serves: the virtualenv it can make, the client
libraries the database and broker URLs need, and how to reach ``feed`` afterwards.

The Makefile itself runs, with stand-ins for what would need the network: a
virtualenv whose ``pip`` records what it is asked to install and whose ``feed``
records how it is started, or a Python without ``ensurepip``, as Debian's is until
its python3-venv package is installed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from feed import extras

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DECLARED_EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])

POSTGRESQL = "postgresql://feed@127.0.0.1/feed"
REDIS = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("database", "broker", "needed"),
    [
        (None, None, []),
        ("sqlite:///feed.db", "memory://", []),
        (POSTGRESQL, None, ["postgresql"]),
        ("postgres://feed@db/feed", None, ["postgresql"]),
        ("postgresql+psycopg://feed@db/feed", POSTGRESQL, ["postgresql"]),
        (None, REDIS, ["redis"]),
        (None, "rediss://cache:6380/0", ["redis"]),
        (POSTGRESQL, REDIS, ["postgresql", "redis"]),
    ],
)
def test_the_urls_name_the_extras_they_need(
    database: str | None, broker: str | None, needed: list[str]
) -> None:
    environ = {"FEED_DATABASE_URL": database, "FEED_BROKER_URL": broker}
    found = extras.needed({k: v for k, v in environ.items() if v is not None})
    assert found == needed


def test_every_extra_a_url_may_need_is_declared() -> None:
    assert extras.OPTIONAL <= DECLARED_EXTRAS


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEED_", "MAKE"))}
    return {**env, **extra}


def make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stand_in_virtualenv(where: Path) -> tuple[Path, Path]:
    """A virtualenv, as `make` made it, whose pip and feed only say how they were run.
    Returns where each writes that."""
    bin_dir = where / "bin"
    bin_dir.mkdir(parents=True)
    installs, serves = where / "pip.log", where / "feed.log"
    for name, log in (("pip", installs), ("feed", serves)):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\n')
        script.chmod(0o755)
    return installs, serves


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_make_run_installs_the_clients_its_urls_need_once(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    installs, serves = stand_in_virtualenv(venv)
    env = clean_env(FEED_DATABASE_URL=POSTGRESQL, FEED_BROKER_URL=REDIS)
    done = make("run", f"VENV={venv}", env=env)
    assert done.returncode == 0, done.stderr
    pinned = "install --quiet --constraint constraints.txt --build-constraint constraints.txt"
    assert lines(installs) == [f"{pinned} -e .[postgresql]", f"{pinned} -e .[redis]"]
    assert lines(serves) == ["serve"]
    # Installed once: the next run only serves.
    assert make("run", f"VENV={venv}", env=env).returncode == 0
    assert len(lines(installs)) == 2 and lines(serves) == ["serve", "serve"]
    # SQLite and the memory broker need nothing more.
    plain = tmp_path / "plain"
    installs, serves = stand_in_virtualenv(plain)
    assert make("run", f"VENV={plain}", env=clean_env()).returncode == 0
    assert (lines(installs), lines(serves)) == ([], ["serve"])


@pytest.mark.slow
def test_make_run_says_how_to_put_feed_on_the_path(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    stand_in_virtualenv(venv)
    done = make("run", f"VENV={venv}", env=clean_env())
    assert done.returncode == 0, done.stderr
    [told] = [line.strip() for line in done.stdout.splitlines() if "export PATH=" in line]
    # What it says works in a shell: `feed` is then the virtualenv's.
    found = subprocess.run(
        ["bash", "-c", f"{told}; command -v feed"],
        env=clean_env(PATH="/usr/bin:/bin"),
        capture_output=True,
        text=True,
        timeout=10,
        cwd=tmp_path,
    )
    assert found.stdout.strip() == str(venv / "bin" / "feed")


@pytest.mark.slow
def test_make_run_without_ensurepip_says_which_package_to_install(tmp_path: Path) -> None:
    # A Python that cannot make a virtualenv with pip in it, as Debian's without
    # python3-venv: its ensurepip module is missing.
    shadow = tmp_path / "shadow" / "ensurepip"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError('ensurepip')\n")
    python = tmp_path / "python3"
    python.write_text(
        f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(shadow.parent))} "
        f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    python.chmod(0o755)
    venv = tmp_path / "venv"
    # Were pip to run, it would find no index: fail at once rather than wait.
    quick = {"PIP_INDEX_URL": "http://127.0.0.1:9/", "PIP_RETRIES": "0", "PIP_TIMEOUT": "1"}
    done = make("run", f"PYTHON={python}", f"VENV={venv}", env=clean_env(**quick))
    package = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
    assert done.returncode != 0
    assert f"apt-get install {package}" in done.stderr, done.stderr
    assert not venv.exists(), "nothing is made before the check"
