"""Browser sign-in: a token, or a fronting proxy's user header, exchanged for a signed
session cookie; and what a page knows of its viewer.

Rationale:

1. The cookie is HttpOnly (scripts never see it), SameSite=Lax (other sites' forms
   do not carry it) and Secure when the request came over TLS, including behind a
   proxy trusted through ``FEED_FORWARDED_ALLOW_IPS``.
2. A page seen through the trusted user header turns it into a session right away:
   the page needs the session's CSRF token for its forms (access.py, on cookies
   and CSRF).
3. ``next`` only ever leads to a path on this site, so the sign-in page cannot be
   used to send people elsewhere.
4. A sign-in posted from another site is refused (its ``Origin`` names another
   host): otherwise a page elsewhere could sign a visitor in as someone else, and
   what they post would go out under that name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from feed.access import KIOSK_PARAM, SESSION_COOKIE, check_csrf
from feed.errors import ClientError
from feed.identity import Identity, Via
from feed.permissions import Permissions
from feed.runtime import runtime

MAX_FORM_BYTES = 4096


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

    @property
    def who(self) -> Identity:
        return self.perms.identity

    def context(self) -> dict[str, Any]:
        who = self.who
        return {
            "viewer": who.name if who.via is not Via.KIOSK else None,
            "csrf": who.csrf,
            "signin_url": None if who.signed_in else "/signin",
        }

    def apply(self, response: Response, connection: HTTPConnection) -> Response:
        if self.cookie is not None:
            set_session(response, connection, self.cookie)
        return response


def set_session(response: Response, connection: HTTPConnection, value: str) -> None:
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
        cookie, who = rt.access.session(who)
    return Viewer(await rt.access.permissions(who), cookie)


def safe_next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def _form(request: Request) -> dict[str, str]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            raise ClientError(413, f"The form is larger than {MAX_FORM_BYTES} bytes.")
    fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items() if values}


def _page(request: Request, status: int = 200, **context: Any) -> Response:
    rt = runtime(request)
    html = rt.renderer.env.get_template("signin.html").render(**context)
    return Response(html, status, media_type="text/html")


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
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise ClientError(403, "Sign in from feed's own sign-in page.", origin)
    form = await _form(request)
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
    form = await _form(request)
    who = await rt.access.identify(request.scope)
    if who.via is Via.SESSION:
        check_csrf(request, who, form)
        await rt.access.sign_out(who)
    answer = RedirectResponse("/", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax")
    return answer


async def on_sign_in_first(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInFirst)
    return RedirectResponse("/signin?" + urlencode({"next": exc.path}), status_code=303)


HANDLERS = {SignInFirst: on_sign_in_first}

routes = [
    Route("/signin", signin_page, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
]
