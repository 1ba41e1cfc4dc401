# The dashboard as an ASGI application (Starlette), bound to one engine.
#
# Theory of operation. Every handler runs in the engine's own Trio program (hypercorn's
# Trio worker) and reads through `_read` - ordinary engine queries, each a bounded page -
# then renders `_pages`' HTML or returns the same data as JSON under /api/. Operator
# actions take two steps: GET /confirm renders what will happen (it changes nothing), and
# its form POSTs to /action with the page's CSRF token and the fence the operator saw;
# `_commands` turns that into the engine's ordinary fenced command, and the answer is a
# redirect back to the flow with a one-time flash message kept on the server.
#
# Security, outermost first:
# - `TokenGate` (only when a token is configured, which `serve_dashboard` demands for any
#   non-loopback bind): the token may come as `Authorization: Bearer`, as a cookie set on
#   first visit, or once as `?token=` (which sets the cookie and redirects it away).
#   Compared with hmac.compare_digest; anything else gets 401. Without a token,
#   `LoopbackHostGate` answers only requests whose Host is a loopback name (against DNS
#   rebinding: a foreign page whose domain resolves to 127.0.0.1).
# - read-only: /confirm and /action answer 403 and no action control is rendered.
# - CSRF: /action needs the per-app random token embedded in the confirmation form.
# - Every response carries a Content-Security-Policy allowing only this origin's script
#   and stylesheet, so even a missed escape could not run an inline script.
from __future__ import annotations

import hmac
import json
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import (
    Engine,
    FlowError,
    FlowNotFound,
    FlowTerminal,
    IdempotencyConflict,
    InvalidArgument,
    StaleLease,
    WrongState,
)
from . import _commands, _pages, _read
from ._html import Html
from ._metrics import CONTENT_TYPE, registry_for, scrape
from ._static import CSS, JS

MAX_FORM_BYTES = 64 * 1024
COOKIE = "flowactors_token"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _status_of(exc: FlowError) -> int:
    if isinstance(exc, FlowNotFound):
        return 404
    if isinstance(exc, InvalidArgument):
        return 400
    if isinstance(exc, WrongState | StaleLease | FlowTerminal | IdempotencyConflict):
        return 409
    return 500


class Dashboard:
    """The handlers, with the engine and settings they share."""

    def __init__(
        self, engine: Engine, *, read_only: bool, refresh_ms: int, data_dir: str | None
    ) -> None:
        self.engine = engine
        self.read_only = read_only
        self.csrf = secrets.token_urlsafe(24)
        self.chrome = _pages.Chrome(data_dir or engine.path, read_only, self.csrf, refresh_ms)
        self.registry, self.collector = registry_for(engine)
        self._flashes: OrderedDict[str, tuple[str, bool]] = OrderedDict()

    # -- plumbing ----------------------------------------------------------------------

    def _page(self, body: Html, status: int = 200) -> Response:
        return Response(body, status, media_type="text/html; charset=utf-8")

    def _error(self, exc: FlowError, request: Request) -> Response:
        status = _status_of(exc)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc), "kind": type(exc).__name__}, status)
        title = {404: "Not found", 400: "Bad request", 409: "Conflict"}.get(status, "Error")
        return self._page(_pages.error_page(self.chrome, status, title, str(exc)), status)

    def _flash(self, message: str, ok: bool) -> str:
        key = secrets.token_urlsafe(9)
        self._flashes[key] = (message, ok)
        while len(self._flashes) > 256:
            self._flashes.popitem(last=False)
        return key

    def routes(self) -> list[Route]:
        def wrap(handler: Callable[[Request], Awaitable[Response]]) -> Any:
            async def endpoint(request: Request) -> Response:
                try:
                    response = await handler(request)
                except FlowError as exc:
                    response = self._error(exc, request)
                response.headers.update(SECURITY_HEADERS)
                return response

            return endpoint

        return [
            Route("/", wrap(self.overview)),
            Route("/api/overview", wrap(self.overview_json)),
            Route("/flows", wrap(self.flows)),
            Route("/api/flows", wrap(self.flows_json)),
            Route("/flow", wrap(self.flow)),
            Route("/api/flow", wrap(self.flow_json)),
            Route("/api/value", wrap(self.value_json)),
            Route("/confirm", wrap(self.confirm)),
            Route("/action", wrap(self.action), methods=["POST"]),
            Route("/metrics", wrap(self.metrics)),
            Route("/static/app.css", wrap(self.css)),
            Route("/static/app.js", wrap(self.js)),
        ]

    # -- views -------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        ov = await _read.overview(self.engine)
        return self._page(_pages.overview_page(self.chrome, ov))

    async def overview_json(self, request: Request) -> Response:
        return JSONResponse((await _read.overview(self.engine)).as_json())

    async def flows(self, request: Request) -> Response:
        try:
            flt = _filter(request)
            listing = await _read.list_flows(self.engine, flt)
            error = None
        except InvalidArgument as exc:
            listing = await _read.list_flows(self.engine, _read.ListFilter())
            error = str(exc)
        page = _pages.list_page(self.chrome, listing, self.engine.now_ms(), error)
        return self._page(page, 400 if error else 200)

    async def flows_json(self, request: Request) -> Response:
        return JSONResponse((await _read.list_flows(self.engine, _filter(request))).as_json())

    async def flow(self, request: Request) -> Response:
        flow_id, pk = _flow_ref(request)
        detail = await _read.flow_detail(self.engine, flow_id, partition_key=pk)
        flash = self._flashes.pop(request.query_params.get("flash", ""), None)
        message, ok = flash if flash is not None else (None, True)
        return self._page(_pages.flow_page(self.chrome, detail, self.engine.now_ms(), message, ok))

    async def flow_json(self, request: Request) -> Response:
        flow_id, pk = _flow_ref(request)
        detail = await _read.flow_detail(self.engine, flow_id, partition_key=pk)
        return JSONResponse(detail.as_json())

    async def value_json(self, request: Request) -> Response:
        flow_id, pk = _flow_ref(request)
        name = request.query_params.get("name", "")
        value = await _read.read_value(self.engine, flow_id, name, partition_key=pk)
        return JSONResponse(value.as_json())

    async def metrics(self, request: Request) -> Response:
        body = await scrape(self.collector, self.registry)
        return Response(body, media_type=CONTENT_TYPE)

    async def css(self, request: Request) -> Response:
        return Response(CSS, media_type="text/css; charset=utf-8")

    async def js(self, request: Request) -> Response:
        return Response(JS, media_type="text/javascript; charset=utf-8")

    # -- actions -----------------------------------------------------------------------

    def _refuse_read_only(self) -> Response | None:
        if not self.read_only:
            return None
        return self._page(
            _pages.error_page(self.chrome, 403, "Read-only", "This dashboard is read-only."), 403
        )

    async def confirm(self, request: Request) -> Response:
        refused = self._refuse_read_only()
        if refused is not None:
            return refused
        action = request.query_params.get("do", "")
        if action not in _commands.ACTIONS:
            raise InvalidArgument(f"unknown action {action!r}")
        flow_id, pk = _flow_ref(request)
        detail = await _read.flow_detail(self.engine, flow_id, partition_key=pk)
        event = None
        if action == "rewind":
            version = _int(request.query_params.get("version"), "version")
            event = next((e for e in detail.history if e.version == version), None)
            if event is None:
                raise InvalidArgument(f"flow {flow_id!r} has no stored event v{version}")
        elif action == "retry":
            event = _read.latest_live_event(detail.history)
        page = _pages.confirm_page(
            self.chrome, action, detail.flow, dict(request.query_params), event
        )
        return self._page(page)

    async def action(self, request: Request) -> Response:
        refused = self._refuse_read_only()
        if refused is not None:
            return refused
        form = await _form(request)
        if not hmac.compare_digest(form.get("csrf", "").encode(), self.csrf.encode()):
            return self._page(
                _pages.error_page(
                    self.chrome,
                    403,
                    "Refused",
                    "The form is stale or did not come from "
                    "this dashboard (CSRF token mismatch); open the flow again.",
                ),
                403,
            )
        action = form.get("do", "")
        flow_id = form.get("id", "")
        pk = form.get("pk") or None
        try:
            message = await self._perform(action, flow_id, pk, form)
            ok = True
        except FlowError as exc:
            message, ok = f"{action} refused: {type(exc).__name__}: {exc}", False
        target = {"id": flow_id, "flash": self._flash(message, ok)}
        if pk:
            target["pk"] = pk
        return RedirectResponse("/flow?" + urlencode(target), status_code=303)

    async def _perform(
        self, action: str, flow_id: str, pk: str | None, form: dict[str, str]
    ) -> str:
        engine = self.engine
        if action == "cancel":
            flow = await _commands.cancel(
                engine,
                flow_id,
                fencing_token=_int(form.get("fencing"), "fencing"),
                reason=form.get("reason") or None,
                partition_key=pk,
            )
            return f"Cancelled: the flow is {flow.state}."
        if action == "rewind":
            version = _int(form.get("version"), "version")
            flow = await _commands.rewind(
                engine,
                flow_id,
                version,
                expect_state=form.get("seen_state") or None,
                partition_key=pk,
            )
            return f"Rewound to v{version}: the flow is {flow.state}."
        if action == "retry":
            flow = await _commands.retry(engine, flow_id, partition_key=pk)
            return f"Retrying: the flow is {flow.state}, due now."
        if action == "signal":
            values = _values(form.get("values", ""))
            flow = await _commands.signal(
                engine,
                flow_id,
                form.get("name", ""),
                values=values,
                transition_to=form.get("transition_to") or None,
                if_state=None,
                partition_key=pk,
            )
            return f"Signal {form.get('name', '')!r} delivered: the flow is {flow.state}."
        raise InvalidArgument(f"unknown action {action!r}")


def _flow_ref(request: Request) -> tuple[str, str | None]:
    flow_id = request.query_params.get("id", "")
    if not flow_id:
        raise InvalidArgument("no flow id given")
    return flow_id, request.query_params.get("pk") or None


def _int(text: str | None, what: str) -> int:
    try:
        return int(text or "")
    except ValueError:
        raise InvalidArgument(f"{what} must be an integer") from None


def _filter(request: Request) -> _read.ListFilter:
    q = request.query_params
    limit = _int(q.get("limit") or "50", "limit")
    if not 1 <= limit <= 500:
        raise InvalidArgument("limit must be within 1..500")
    return _read.ListFilter(
        type=q.get("type", ""),
        state=q.get("state", ""),
        parent=q.get("parent", ""),
        root=q.get("root", ""),
        correlation=q.get("correlation", ""),
        from_ms=_read.parse_time_ms(q.get("from_ms"), "from_ms"),
        to_ms=_read.parse_time_ms(q.get("to_ms"), "to_ms"),
        limit=limit,
        cursor=q.get("cursor") or None,
    )


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (the only kind the dashboard posts), size-capped."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidArgument("form too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidArgument("form is not UTF-8") from None
    return {k: v[-1] for k, v in parsed.items()}


def _values(text: str) -> dict[str, bytes] | None:
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"named values must be a JSON object: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InvalidArgument("named values must be a JSON object of strings")
    return {str(k): v.encode() for k, v in data.items()}


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class LoopbackHostGate:
    """ASGI middleware for a dashboard without a token: the Host header must name a
    loopback address, so a web page whose domain resolves to 127.0.0.1 (DNS rebinding)
    cannot read the dashboard or drive it from the user's browser."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Request(scope).headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in LOOPBACK_NAMES:
                response = Response(
                    "403: this dashboard answers only to a loopback host name\n",
                    403,
                    media_type="text/plain; charset=utf-8",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class TokenGate:
    """ASGI middleware: every request must present the token (see the module comment)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        auth = request.headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        if self._ok(bearer) or self._ok(request.cookies.get(COOKIE)):
            await self.app(scope, receive, send)
            return
        given = request.query_params.get("token")
        if self._ok(given):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, given or "", httponly=True, samesite="strict")
        else:
            response = Response(
                "401: this dashboard needs its access token (?token=..., or an "
                "Authorization: Bearer header)\n",
                401,
                media_type="text/plain; charset=utf-8",
                headers={"www-authenticate": "Bearer"},
            )
        await response(scope, receive, send)


def dashboard_app(
    engine: Engine,
    *,
    read_only: bool = False,
    token: str | None = None,
    refresh_ms: int = 2000,
    data_dir: str | None = None,
) -> ASGIApp:
    """The dashboard's ASGI app for `engine` (serve it with `serve_dashboard`, or mount
    it in an ASGI server of your own that runs on Trio). Without a token it answers only
    requests addressed to a loopback host name."""
    dash = Dashboard(engine, read_only=read_only, refresh_ms=refresh_ms, data_dir=data_dir)
    app: ASGIApp = Starlette(routes=dash.routes())
    if token is None:
        return LoopbackHostGate(app)
    if not token:
        raise InvalidArgument("the dashboard token must not be empty")
    return TokenGate(app, token)
