"""Browser sign-in: a token, or a fronting proxy's user header, exchanged for a signed
session cookie (viewers.py sets it), and sign-out.

Rationale:

1. ``next`` only ever leads to a path on this site, so the sign-in page cannot be
   used to send people elsewhere.
2. A sign-in posted from another site is refused (its ``Origin`` names another
   host): otherwise a page elsewhere could sign a visitor in as someone else, and
   what they post would go out under that name.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from feed.access import SESSION_COOKIE, check_csrf
from feed.errors import ClientError
from feed.identity import Via
from feed.inputs import read_form
from feed.runtime import runtime
from feed.viewers import set_session, viewer

# The sign-in and sign-out forms hold a token, a path and a CSRF token at most.
MAX_FORM_BYTES = 4096


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this site, else the home page (rationale 1)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _page(request: Request, status: int = 200, **context: Any) -> Response:
    return runtime(request).renderer.page("signin.html", status, **context)


async def signin_page(request: Request) -> Response:
    rt = runtime(request)
    target = safe_next(request.query_params.get("next"))
    header = rt.settings.trusted_user_header
    if header and request.headers.get(header, "").strip():
        found = await viewer(request)
        answer = RedirectResponse(target, status_code=303)
        return found.apply(answer, request)
    return _page(request, next=target, error=None, header=header or None)


async def signin(request: Request) -> Response:
    """Exchange a token typed into the form for a session."""
    rt = runtime(request)
    origin = request.headers.get("origin")  # rationale 2
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise ClientError(403, "Sign in from feed's own sign-in page.", origin)
    form = await read_form(request, MAX_FORM_BYTES)
    target = safe_next(form.get("next"))
    token = form.get("token", "").strip()
    try:
        if not token:
            raise ClientError(401, "Paste your token to sign in.")
        who = await rt.access.from_token(token)
    except ClientError as exc:
        return _page(request, 401, next=target, error=exc.message, header=None)
    cookie, _session = rt.access.session(who)
    answer = RedirectResponse(target, status_code=303)
    set_session(answer, request, cookie)
    return answer


async def signout(request: Request) -> Response:
    rt = runtime(request)
    form = await read_form(request, MAX_FORM_BYTES)
    who = await rt.access.identify(request.scope)
    if who.via is Via.SESSION:
        check_csrf(request, who, form)
        await rt.access.sign_out(who)
    answer = RedirectResponse("/", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax")
    return answer


routes = [
    Route("/signin", signin_page, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
]
