"""The HTML pages: the dashboard, its partials and the compose form."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from feed.api import create_post_from, int_param, publish, read_body
from feed.errors import ClientError
from feed.runtime import Runtime, runtime
from feed.store import PostView, StoreError


def _render(rt: Runtime, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = rt.renderer.env.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status)


def _url(path: str, **params: Any) -> str:
    pairs = [(k, v) for k, v in params.items() if v is not None]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def _list_context(
    posts: list[PostView], channel: str | None, before: int | None, older_before: int | None
) -> dict[str, Any]:
    older_url = older_before and _url("/partials/posts", channel=channel, before=older_before)
    return {
        "posts": posts,
        "before": before,
        "older_before": older_before,
        "older_url": older_url,
    }


async def _dashboard(request: Request, channel: str | None) -> HTMLResponse:
    rt = runtime(request)
    channels = await rt.store.list_channels()
    by_name = {c.name: c for c in channels}
    if channel is not None and channel not in by_name:
        message = f"There is no channel named #{channel}."
        return _render(rt, "not_found.html", 404, message=message)
    selected = None if channel is None else [channel]
    page = await rt.store.front_page(selected, rt.settings.page_size)
    info = by_name.get(channel) if channel else None
    return _render(
        rt,
        "dashboard.html",
        channels=channels,
        current=channel,
        heading=info.title if info else "All channels",
        description=info.description if info else "",
        stream_url=_url(
            "/events", format="html", channel=channel, last_event_id=page.last_event_id
        ),
        feed_url=_url("/partials/posts", channel=channel),
        fixed_channel=channel,
        form={"channel": channel or "general", "author": "", "body": ""},
        error=None,
        max_chars=rt.settings.max_post_chars,
        **_list_context(page.posts, channel, None, page.older_before),
    )


async def home(request: Request) -> HTMLResponse:
    return await _dashboard(request, None)


async def channel_page(request: Request) -> HTMLResponse:
    return await _dashboard(request, request.path_params["channel"])


async def posts_partial(request: Request) -> HTMLResponse:
    """A page of posts for the "Older posts" button, or the whole list after a resync."""
    rt = runtime(request)
    channel = request.query_params.get("channel") or None
    if channel is not None and channel not in await rt.store.channel_names():
        raise ClientError(404, f"There is no channel named {channel!r}.", channel)
    before = int_param(request, "before", low=1)
    selected = None if channel is None else [channel]
    if before is None:
        page = await rt.store.front_page(selected, rt.settings.page_size)
        context = _list_context(page.posts, channel, None, page.older_before)
    else:
        size = rt.settings.page_size
        posts = await rt.store.list_posts(selected, before=before, limit=size, pinned=False)
        older = posts[-1].id if len(posts) == size else None
        context = _list_context(posts, channel, before, older)
    return _render(rt, "partials/posts.html", oob=False, **context)


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """The compose form's fields, read within the body limit (ClientError if over it)."""
    raw = await read_body(request, limit)
    fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items() if values}


async def compose(request: Request) -> HTMLResponse:
    """The compose form posts here; the new post reaches the page through the stream."""
    rt = runtime(request)
    form: dict[str, str] = {}
    error: str | None = None
    try:
        form = await read_form(request, rt.settings.max_body_bytes)
        fields = {"author": form.get("author", ""), "body": form.get("body", "")}
        await publish(rt, await create_post_from(rt, form.get("channel", ""), fields))
    except (ClientError, StoreError) as exc:
        error = exc.message if isinstance(exc, ClientError) else str(exc)
    values = {k: form.get(k, "") for k in ("channel", "author", "body")}
    context: dict[str, Any] = {
        "channels": await rt.store.list_channels(),
        "fixed_channel": values["channel"] if form.get("fixed") else None,
        "max_chars": rt.settings.max_post_chars,
    }
    if error is not None:
        return _render(rt, "partials/compose.html", 422, form=values, error=error, **context)
    cleared = {**values, "body": ""}
    return _render(rt, "partials/compose.html", form=cleared, error=None, **context)


routes = [
    Route("/", home, methods=["GET"]),
    Route("/channels/{channel}", channel_page, methods=["GET"]),
    Route("/partials/posts", posts_partial, methods=["GET"]),
    Route("/compose", compose, methods=["POST"]),
]
