"""Who looks at a page: the viewer, what the page knows of them, the session cookie a
page may set, and the way to sign in when a page needs someone.

Pages, the admin page and sign-in all ask here (``viewer``); the gate (access.py)
decides who a request is, and this module only turns that into what a page needs.

Rationale:

1. The session cookie is HttpOnly (scripts never see it), SameSite=Lax (other
   sites' forms do not carry it) and Secure when the request came over TLS,
   including behind a proxy trusted through ``FEED_FORWARDED_ALLOW_IPS``.
2. A page seen through the trusted user header turns it into a session right away:
   the page needs the session's CSRF token for its forms (access.py, on cookies
   and CSRF).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response

from feed.access import KIOSK_PARAM, SESSION_COOKIE
from feed.errors import ClientError
from feed.identity import Identity, Via
from feed.permissions import Permissions
from feed.runtime import runtime


class SignInFirst(Exception):
    """A page needs someone signed in: answered with a redirect to /signin."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at a page, what they may do, and a session cookie to set, if new."""

    perms: Permissions
    cookie: str | None = None
    # Where "Sign in" brings the viewer back to: every page that may show it needs it.
    path: str = "/"

    @property
    def who(self) -> Identity:
        return self.perms.identity

    def context(self) -> dict[str, Any]:
        who = self.who
        return {
            "viewer": who.name if who.via is not Via.KIOSK else None,
            "csrf": who.csrf,
            "signin_url": None if who.signed_in else "/signin",
            "request_path": self.path,
        }

    def apply(self, response: Response, connection: HTTPConnection) -> Response:
        if self.cookie is not None:
            set_session(response, connection, self.cookie)
        return response


def set_session(response: Response, connection: HTTPConnection, value: str) -> None:
    """Give the browser the session cookie ``value`` (rationale 1)."""
    rt = runtime(connection)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=rt.access.session_seconds,
        httponly=True,
        samesite="lax",
        secure=connection.url.scheme == "https",
    )


async def viewer(request: HTTPConnection) -> Viewer:
    """The page's viewer; SignInFirst when the feed is closed to anonymous readers."""
    rt = runtime(request)
    try:
        who = await rt.access.identify(request.scope)
    except ClientError as exc:
        # A kiosk link that does not work is shown as such: a kiosk cannot sign in.
        if exc.status != 401 or KIOSK_PARAM in request.query_params:
            raise
        raise SignInFirst(request.url.path) from None
    cookie = None
    if who.via is Via.HEADER:
        cookie, who = rt.access.session(who)  # rationale 2
    return Viewer(await rt.access.permissions(who), cookie, request.url.path)


async def on_sign_in_first(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInFirst)
    return RedirectResponse("/signin?" + urlencode({"next": exc.path}), status_code=303)


HANDLERS = {SignInFirst: on_sign_in_first}
