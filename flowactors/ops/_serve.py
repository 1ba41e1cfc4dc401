# Serving the dashboard from inside the engine's Trio program.
#
# Theory of operation. hypercorn's Trio worker serves the ASGI app as tasks of the
# caller's nursery, so the dashboard shares the engine's event loop and reads it through
# ordinary queries; cancelling the task stops the server. `serve_dashboard` is written for
# `await nursery.start(serve_dashboard, engine)`: it reports the URL once listening (with
# port=0, the port the OS chose). Binding anything but a loopback address requires a token.
from __future__ import annotations

import ipaddress
import logging
from functools import partial
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from .. import Engine, InvalidArgument
from ._app import dashboard_app

DEFAULT_PORT = 8642


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def serve_dashboard(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    token: str | None = None,
    read_only: bool = False,
    refresh_ms: int = 2000,
    data_dir: str | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard (and /metrics) for `engine` until cancelled.

    Loopback only unless `token` is given (InvalidArgument otherwise); with a token every
    request must present it. `read_only` hides and refuses every action."""
    if not is_loopback(host) and not token:
        raise InvalidArgument(
            f"refusing to serve the dashboard on {host!r} without a token: "
            "pass token=... (or bind a loopback address)"
        )
    if not 0 <= port <= 65535:
        raise InvalidArgument("port must be within 0..65535")
    app = dashboard_app(
        engine, read_only=read_only, token=token, refresh_ms=refresh_ms, data_dir=data_dir
    )
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("flowactors.ops.http")
    config.graceful_timeout = 0.5

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(serve, cast(Any, app), config, mode="asgi"))
        task_status.started(binds[0])
