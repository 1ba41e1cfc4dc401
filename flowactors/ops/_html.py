# Safe HTML: every value is escaped unless it is already markup.
#
# Theory of operation. `Html` is a str subclass meaning "this is markup we built"; any
# other value that goes into a page passes through `html()`'s escaping, so a flow id,
# state, attribute, payload or event field holding `<script>` is shown as text. Pages are
# built with `html(template, *args)`: the template is ours (trusted), the arguments are
# escaped unless they are Html. There is no other way to put text into a page, which is
# what makes the escaping hard to forget. URLs are built with `url()` (query parameters
# percent-encoded) and then escaped like any attribute value.
from __future__ import annotations

import html as _std_html
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode


class Html(str):
    """Markup built by this package (trusted)."""

    __slots__ = ()


def escape(value: object) -> Html:
    if isinstance(value, Html):
        return value
    return Html(_std_html.escape("" if value is None else str(value), quote=True))


def html(template: str, *args: object) -> Html:
    """`template` with `{}` fields filled by the escaped args."""
    return Html(template.format(*(escape(a) for a in args)))


def join(parts: Iterable[object], sep: str = "") -> Html:
    return Html(sep.join(escape(p) for p in parts))


def url(path: str, params: Mapping[str, object] | None = None) -> str:
    """A URL with percent-encoded query parameters (None values left out)."""
    if not params:
        return path
    query = urlencode({k: str(v) for k, v in params.items() if v is not None and v != ""})
    return f"{path}?{query}" if query else path


def when(ms: int | None, now_ms: int | None = None) -> Html:
    """A time in ms as a <time> element: relative text, exact UTC in the tooltip."""
    if ms is None:
        return Html("<span class=muted>—</span>")
    try:
        exact = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except (OverflowError, OSError, ValueError):
        exact = f"{ms} ms"
    text = exact[11:] if now_ms is None else relative(ms, now_ms)
    return html('<time title="{} UTC" data-ms="{}">{}</time>', exact, ms, text)


def relative(ms: int, now_ms: int) -> str:
    delta = (now_ms - ms) / 1000
    future = delta < 0
    delta = abs(delta)
    if delta < 1:
        text = "now" if not future else "in <1 s"
        return text
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if delta >= size:
            amount = int(delta // size)
            return f"in {amount} {unit}" if future else f"{amount} {unit} ago"
    return "now"  # pragma: no cover - delta >= 1 always matches "s"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


STATE_CLASSES = {
    "completed": "ok",
    "failed": "bad",
    "cancelled": "off",
    "running": "run",
}


def badge(state: str | None, text: str | None = None) -> Html:
    """A state as a coloured pill (`text` instead of the state's name if given)."""
    if not state:
        return Html("")
    kind = STATE_CLASSES.get(state, "live")
    return html('<span class="badge {}">{}</span>', kind, state if text is None else text)
