"""``feed post``: one post, from its argument or standard input, or with ``--ndjson``
every line of standard input a post, sent in batches (post_lines.py, batch_sender.py)
and reported line by line.

The exit codes, and SIGTERM heard as Ctrl-C, are cli.py's rationale 2; every string a
server sent reaches the terminal one line each (cli.py, rationale 4).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from feed.arguments import INTERRUPTED, OK, REFUSED, TERMINATED
from feed.standard_output import reader_gone, to_nowhere, warn
from feed.terminal_text import json_safe, one_line

if TYPE_CHECKING:
    from feed.client import Client
    from feed.post_lines import Line


def post_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with ``feed post``'s arguments, if anything: with ``--reply-to``
    the first one is the id of the post to answer; with ``--ndjson``, the posts come
    from standard input."""
    if args.ndjson:
        if args.reply_to or args.text != "-":
            return "--ndjson reads the posts from standard input: feed post --ndjson CHANNEL -"
        args.reply_to = None
        return None
    if args.reply_to:
        if not (args.channel.isascii() and args.channel.isdigit()):
            return f"--reply-to takes the id of the post to answer first, not {args.channel!r}"
        args.reply_to, args.channel = int(args.channel), None
    else:
        args.reply_to = None
    return None


def no_input(args: argparse.Namespace) -> str | None:
    """Why ``feed post ... -`` has nothing to read, if its standard input is closed
    (``<&-``): Python then has no ``sys.stdin`` at all."""
    if args.text != "-" or sys.stdin is not None:
        return None
    what = "posts" if args.ndjson else "post"
    return f"there is no standard input to read the {what} from: it is closed"


def post(args: argparse.Namespace, server: Client, body_limit: int) -> int:
    if args.ndjson:
        return _post_lines(args, server)
    text = _standard_input(body_limit) if args.text == "-" else args.text
    if args.reply_to is not None:
        answer = server.reply(args.reply_to, text)
    else:
        answer = server.post(args.channel, text)
    post = answer["post"]
    if args.json:
        print(json_safe(json.dumps(answer)))
    elif args.reply_to is not None:
        print(
            f"replied to post {args.reply_to} in #{one_line(post['channel'])}: "
            f"post {post['id']}, event {answer['event_id']}"
        )
    else:
        print(
            f"posted to #{one_line(post['channel'])}: post {post['id']}, event {answer['event_id']}"
        )
    return OK


def _standard_input(body_limit: int) -> str:
    """``feed post CHANNEL -``'s text, read no further than the largest request a
    server takes: ``FEED_MAX_BODY_BYTES``, the server's default unless it is set here
    too. A client cannot know the server's setting; a post longer than that is refused
    here, as the server would refuse it (413), without reading the rest."""
    from feed.client_failures import NotSendable
    from feed.standard_input import NotUTF8, TooLong, at_most, utf8_text

    try:
        return utf8_text(at_most(sys.stdin.buffer, body_limit), "standard input")
    except TooLong:
        raise NotSendable(
            f"standard input is longer than a request's {body_limit} bytes (413): the most "
            f"a server takes with FEED_MAX_BODY_BYTES={body_limit}; for a server that takes "
            "more, set FEED_MAX_BODY_BYTES here to its value"
        ) from None
    except NotUTF8 as exc:
        raise NotSendable(str(exc)) from None


def _post_lines(args: argparse.Namespace, server: Client) -> int:
    """``feed post --ndjson``: every line of standard input a post, sent in batches
    (post_lines.py, batch_sender.py); one line printed per post, in order, as soon as
    it is answered, and 3 if any was refused. Stopped (a failure, Ctrl-C or SIGTERM),
    it reports every line answered so far and says which lines may have been posted
    and which were not (2)."""
    from feed import post_lines
    from feed.batch_sender import BatchSender
    from feed.client_failures import Failure, NotSendable
    from feed.inputs import CHANNEL_NAME, CHANNEL_NAME_RULE
    from feed.standard_input import LineReader

    if not CHANNEL_NAME.fullmatch(args.channel):  # as a single post's is, before any line
        raise NotSendable(f"there is no channel named {args.channel!r}. {CHANNEL_NAME_RULE}")
    account = post_lines.Account()
    # The report needs only ids and where each post went, unless it prints the
    # results whole (batch.py, on the minimal answer).
    sender = BatchSender(
        server, account, minimal=not args.json, say=lambda said: warn(one_line(said))
    )
    lines = LineReader(sys.stdin.fileno(), post_lines.BATCH_BYTES)
    refused = False

    def show(line: Line, result: dict[str, Any]) -> None:
        nonlocal refused
        refused |= result["status"] != 201
        said = (
            json_safe(json.dumps(result))
            if args.json
            else f"line {line.number}: {_said(result, line)}"
        )
        _report(said)

    run = post_lines.new_run()
    try:
        with _terminated_as_stopped():
            for batch in post_lines.batches(lines, args.channel, run, lambda: sender.batch_bytes):
                for line, result in sender.send(batch):
                    show(line, result)
    except Failure:
        for line, result in account.to_report(everything=True):
            show(line, result)
        raise
    except (KeyboardInterrupt, _Terminated) as stop:
        for line, result in account.to_report(everything=True):
            show(line, result)
        terminated = isinstance(stop, _Terminated)
        warn(f"{'terminated' if terminated else 'interrupted'}; {account.summary()}")
        return TERMINATED if terminated else INTERRUPTED
    return REFUSED if refused else OK


class _Terminated(Exception):
    """SIGTERM, which ``feed post --ndjson`` hears as it hears Ctrl-C (2)."""


@contextlib.contextmanager
def _terminated_as_stopped() -> Iterator[None]:
    """SIGTERM raising ``_Terminated`` while this lasts, where a handler can be set."""

    def stop(signum: int, frame: object) -> None:
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (a test calling main): nothing to hear
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report(line: str) -> None:
    """One line of ``feed post --ndjson``'s report. A reader that leaves (``| head``)
    ends the report, not the posting: every line of input is still sent."""
    try:
        print(line, flush=True)  # each as it is known, also into a pipe
    except BrokenPipeError:
        if not reader_gone():
            raise
        to_nowhere()


def _said(result: dict[str, Any], line: Line) -> str:
    """One result of a batch, for the item of ``line``, as a line. A server may
    ignore the preference for the minimal answer (RFC 7240) and send the whole post."""
    if result["status"] != 201:
        return f"refused ({result['status']}): {one_line(result['error'])}"
    post = result.get("post", result)
    where = f"#{one_line(post['channel'])}: post {post['id']}, event {result['event_id']}"
    parent = line.item.get("parent")
    if parent is not None:
        return f"replied to post {parent} in {where}"
    return f"posted to {where}"
