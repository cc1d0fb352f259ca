"""The README, command by command: every command of its shell blocks runs, in order,
as a newcomer would type them in a fresh checkout, against a real server.

- Each command runs in its own bash, in a directory that stands for the checkout, and
  hands on what it sets (``TOKEN``, ``AUTH``, ``PATH``...) to the next. The
  directory's ``.venv/bin`` holds ``feed`` and ``python`` as ``make run`` would leave
  them, so the README's own line puts them on ``PATH``.
- The server is this test's: ``feed serve`` on the checkout's ``./feed.db``, as
  ``make run`` starts it, on a free port; commands that name port 8000 get that port
  instead, and the client commands' ``FEED_PORT`` says it.
- Event ids come from the clock, so the README's cannot be typed as they are. Each
  ``text`` block after a command shows that command's output; the test checks it
  (timestamps aside) and learns which real id stands for each id the README shows.
  A later command that names a README id gets the real one, as a reader copies the
  id from their own terminal.
- Commands that run until stopped are run with a bound (``BOUNDED``): started in the
  background, given something to show, and stopped once they show it.
- Commands left out are listed in ``LEFT_OUT``, each with its reason. The README has
  no command that needs Docker (those are in docs/deployment.md).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_PORT = "8000"
# An event id as the README shows one: from the clock, in microseconds.
EVENT_ID = re.compile(r"\b1\d{15}\b")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")
# Long enough for a command that starts Python and talks to the server.
COMMAND_TIMEOUT = 60
SHOWN_WITHIN = 15

LEFT_OUT = {
    "make run": "the test's own server stands for it: `feed serve` on ./feed.db, as make "
    "run starts it; what make run decides before serving is tests/test_make.py's",
    "make test": "this test is part of it",
    "make test-fast": "make test runs the same tests, and this one",
    "make check": "make test runs the same checks",
    "make screenshots": "it rewrites docs/screenshots; the browser tests take the same ones",
    "make bench": "minutes of load against nginx, to measure rather than to check",
    "make constraints": "it resolves new pins from the package index",
}


# -- the README, as a sequence of commands and the outputs it shows ----------------------


@dataclass(frozen=True, slots=True)
class Command:
    text: str


@dataclass(frozen=True, slots=True)
class Shown:
    """A ``text`` block: what the command before it shows."""

    text: str


def blocks(markdown: str) -> Iterator[tuple[str, str]]:
    """Each fenced block's language and text, in order."""
    for found in re.finditer(r"(?ms)^```(\w*)\n(.*?)^```$", markdown):
        yield found.group(1), found.group(2)


def commands(script: str) -> Iterator[str]:
    """A shell block's commands: lines joined at a trailing backslash, bare comments
    and blank lines dropped."""
    pending = ""
    for line in script.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole and not whole.startswith("#"):
            yield whole


def steps(markdown: str) -> list[Command | Shown]:
    found: list[Command | Shown] = []
    for language, text in blocks(markdown):
        if language == "sh":
            found += [Command(c) for c in commands(text)]
        elif language == "text":
            found.append(Shown(text))
    return found


def words(command: str) -> str:
    """A command without its comment, for looking it up."""
    return " ".join(shlex.split(command, comments=True))


# -- the shell ------------------------------------------------------------------------


@dataclass
class Background:
    """A command left running, with what it wrote so far."""

    command: str
    proc: subprocess.Popen[bytes]
    out: Path

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)


@dataclass
class Shell:
    """One reader's shell, in ``home``: each command in a bash of its own, handing on
    what it sets through ``state``."""

    home: Path
    state: Path
    env: dict[str, str]
    running: list[Background] = field(default_factory=list)

    def script(self, command: str) -> str:
        # Every variable set is exported (set -a), so that `export -p` hands it on.
        return (
            f"set -a; . {shlex.quote(str(self.state))}; set -o pipefail\n"
            f"{command}\n"
            f"status=$?; export -p > {shlex.quote(str(self.state))}; exit $status\n"
        )

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", self.script(command)],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )

    def start(self, command: str) -> Background:
        out = self.state.with_name(f"background-{len(self.running)}.out")
        with out.open("wb") as sink, out.with_suffix(".err").open("wb") as errors:
            proc = subprocess.Popen(
                # Line-buffered, as on the reader's terminal: jq, among others, holds
                # its output back when it writes to a file.
                [
                    "stdbuf",
                    "-oL",
                    "bash",
                    "-c",
                    f"set -a; . {shlex.quote(str(self.state))}; {command}",
                ],
                cwd=self.home,
                env=self.env,
                stdout=sink,
                # Apart: curl's progress meter would break the lines it shows.
                stderr=errors,
                start_new_session=True,  # a pipeline stops as one
            )
        started = Background(command, proc, out)
        self.running.append(started)
        return started

    def variable(self, name: str) -> str:
        return self.run(f'printf %s "${name}"').stdout


# -- SSE text, as curl -N prints it -------------------------------------------------------


def messages(text: str) -> list[tuple[str, str, str]]:
    """(id, event, data) of each event in SSE text; retry hints, bare ids and
    comments are not events."""
    found = []
    for chunk in re.split(r"\r?\n\r?\n", text):
        fields: dict[str, str] = {}
        for line in chunk.splitlines():
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            found.append((fields.get("id", ""), fields["event"], fields.get("data", "")))
    return found


def same_but_the_time(shown: str, real: str) -> bool:
    return TIMESTAMP.sub("TIME", shown) == TIMESTAMP.sub("TIME", real)


# -- commands that run until stopped ------------------------------------------------------


@dataclass
class Tour:
    """What the run has learnt: the server, and the real id of each README id."""

    server: Server
    shell: Shell
    ids: dict[str, str] = field(default_factory=dict)

    def as_reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.shell.variable('TOKEN')}"}

    def json_streams(self) -> float:
        """Open JSON streams, as /metrics counts them."""
        text = self.server.client.get("/metrics").text
        lines = re.findall(r'^feed_subscribers\{[^}]*format="json"[^}]*\} (\S+)$', text, re.M)
        return sum(float(n) for n in lines)

    def connected(self, before: float) -> None:
        until(self.json_streams, lambda n: n > before, timeout=SHOWN_WITHIN)


def tail_shows_a_post(tour: Tour, running: Background, before: float) -> None:
    tour.connected(before)
    answer = tour.server.client.post(
        "/api/channels/announcements/posts",
        json={"body": "seen by tail"},
        headers=tour.as_reader(),
    )
    assert answer.status_code == 201, answer.text
    until(running.output, lambda out: "#announcements ada: seen by tail\n" in out, timeout=10)


def a_live_search_shows_only_matching_posts(tour: Tour, running: Background, before: float) -> None:
    until(running.output, lambda out: "retry: " in out, timeout=SHOWN_WITHIN)
    for body in ("deploy test run", "lunch is here", "deploy done"):
        answer = tour.server.client.post(
            "/api/channels/general/posts", json={"body": body}, headers=tour.as_reader()
        )
        assert answer.status_code == 201, answer.text
    until(running.output, lambda out: "deploy done\n" in out, timeout=10)
    shown = [line for line in running.output().splitlines() if line.startswith("data: ")]
    assert len(shown) == 1 and shown[0].endswith("#general ada: deploy done")


def jq_shows_post_bodies_only(tour: Tour, running: Background, before: float) -> None:
    tour.connected(before)
    for path, payload in (
        ("/api/channels", {"name": "tail-check", "title": "A channel event"}),
        ("/api/channels/general/posts", {"body": "seen by jq"}),
    ):
        answer = tour.server.client.post(path, json=payload, headers=tour.as_reader())
        assert answer.status_code == 201, answer.text
    until(running.output, lambda out: '"seen by jq"\n' in out, timeout=10)
    # The channel event came first, and printed nothing (not `null`).
    assert running.output() == '"seen by jq"\n'


# Each command that runs until stopped, by its words, and how it is bounded: None waits
# until the stream has joined, then for the README's next `text` block; a function makes
# something happen that it must show, given how many JSON streams were open before it started.
BOUNDED: dict[str, Callable[[Tour, Background, float], None] | None] = {
    "curl -N localhost:8000/events?format=text": None,
    "curl -N localhost:8000/events?format=text&q=deploy+-test": (
        a_live_search_shows_only_matching_posts
    ),
    "curl -N -H Last-Event-ID: 1796031200000002 localhost:8000/events?format=text": None,
    "feed tail --channel announcements": tail_shows_a_post,
    "feed tail --format json | jq select(.post) | .post.body": jq_shows_post_bodies_only,
}


# -- the test -------------------------------------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A directory that stands for a fresh checkout after `make run`: its virtualenv's
    ``feed`` and ``python`` are this test's."""
    home = tmp_path / "checkout"
    venv = home / ".venv" / "bin"
    venv.mkdir(parents=True)
    for name, command in (("feed", f"{sys.executable} -m feed"), ("python", sys.executable)):
        (venv / name).write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        (venv / name).chmod(0o755)
    return home


def test_every_command_the_readme_gives_runs_in_order(
    make_server: Callable[..., Server], checkout: Path, tmp_path: Path
) -> None:
    server = make_server(database=checkout / "feed.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    # The system's programs (curl, jq), not this test's virtualenv: `feed` is found only
    # once the README puts it on PATH.
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", FEED_PORT=str(server.port))
    state = tmp_path / "shell-state"
    state.write_text("")
    shell = Shell(checkout, state, env)
    tour = Tour(server, shell)
    ran, left_out = [], []
    try:
        for step in steps(README.read_text()):
            if isinstance(step, Shown):
                check_shown(tour, step.text)
                continue
            key = words(step.text)
            if key in LEFT_OUT:
                left_out.append(key)
                continue
            command = typed(tour, step.text)
            if key in BOUNDED:
                bound = BOUNDED[key]
                before = tour.json_streams()
                running = shell.start(command)
                if bound is None:
                    # A stream sends its retry hint once it has joined the hub: what
                    # the next commands post reaches it.
                    until(running.output, lambda out: "retry: " in out, timeout=SHOWN_WITHIN)
                else:
                    bound(tour, running, before)
                    running.stop()
                    # Gone from the count, so the next command's stream is told apart.
                    until(tour.json_streams, lambda n, was=before: n <= was, timeout=SHOWN_WITHIN)
                    shell.running.remove(running)
            else:
                done = shell.run(command)
                assert done.returncode == 0, f"{step.text}\n{done.stdout}{done.stderr}"
                refused(step.text, done.stdout)
            ran.append(key)
    finally:
        for running in shell.running:
            running.stop()
    assert set(left_out) == set(LEFT_OUT), "LEFT_OUT names a command the README lost"
    assert set(BOUNDED) <= set(ran), "BOUNDED names a command the README lost"
    assert not shell.running, "a command left running shows nothing the README says"
    assert len(ran) >= 20


def typed(tour: Tour, command: str) -> str:
    """``command`` as the reader types it: with their port and their event ids."""
    command = command.replace(f"localhost:{README_PORT}", f"localhost:{tour.server.port}")
    for readme_id in EVENT_ID.findall(command):
        assert readme_id in tour.ids, f"{command!r} names {readme_id}, which nothing showed"
        command = command.replace(readme_id, tour.ids[readme_id])
    return command


def refused(command: str, out: str) -> None:
    """curl exits 0 on an error status: an answer that is an error fails too."""
    try:
        answer = json.loads(out)
    except ValueError:
        return
    assert not (isinstance(answer, dict) and "error" in answer), f"{command}\n{out}"


def check_shown(tour: Tour, shown: str) -> None:
    """The oldest command still running shows ``shown`` (timestamps aside), after
    which it is stopped. Its ids become the README's ids' real ones."""
    assert tour.shell.running, f"no running command shows:\n{shown}"
    running = tour.shell.running.pop(0)
    expected = messages(shown)

    def real() -> list[tuple[str, str, str]]:
        return messages(running.output())[: len(expected)]

    try:
        until(real, lambda got: len(got) == len(expected), timeout=SHOWN_WITHIN)
    finally:
        running.stop()
    for (readme_id, event, data), (real_id, real_event, real_data) in zip(
        expected, real(), strict=True
    ):
        assert (event, same_but_the_time(data, real_data)) == (real_event, True), (
            f"{running.command} showed {real_event}: {real_data!r}, not {event}: {data!r}"
        )
        assert tour.ids.setdefault(readme_id, real_id) == real_id
    # The ids the README shows are in order, as the real ones are.
    assert [int(i) for i, _, _ in expected] == sorted(int(i) for i, _, _ in expected)
