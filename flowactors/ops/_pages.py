# The dashboard's pages, rendered on the server from `_read`'s data.
#
# Theory of operation. One function per view returns the page body as `Html`; `page()`
# wraps it in the layout (top bar, navigation, stylesheet, script). Everything that comes
# from a flow goes through `_html.html()` and is escaped. Action buttons link to a
# confirmation page (GET, changes nothing); only its form POSTs, carrying the CSRF token
# and the fence the operator saw. In read-only mode no action control is rendered at all
# (and the server refuses the POSTs anyway).
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import Flow, HistoryEvent
from ._html import Html, badge, html, join, size, url, when
from ._read import (
    FlowDetail,
    FlowList,
    Overview,
    Preview,
    json_text,
    latest_live_event,
    preview,
)


@dataclass(frozen=True, slots=True)
class Chrome:
    """What every page needs to know about the server."""

    data_dir: str
    read_only: bool
    csrf: str
    refresh_ms: int = 2000


def page(chrome: Chrome, title: str, active: str, body: Html) -> Html:
    nav = join(
        html('<a href="{}" class="{}">{}</a>', href, "on" if key == active else "", label)
        for key, href, label in (
            ("overview", url("/"), "Overview"),
            ("flows", url("/flows"), "Flows"),
            ("metrics", url("/metrics"), "Metrics"),
        )
    )
    ro = Html(' <span class="pill ro">read-only</span>') if chrome.read_only else Html("")
    return html(
        """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · flowactors</title>
<link rel="stylesheet" href="/static/app.css">
</head><body>
<header class="top"><div class="brand">flow<span>actors</span></div>
<nav>{}</nav><div class="where">{}{}</div></header>
<main>{}</main>
<script src="/static/app.js"></script>
</body></html>""",
        title,
        nav,
        chrome.data_dir,
        ro,
        body,
    )


def flow_link(flow_id: str, partition_key: str | None = None, text: object = None) -> Html:
    return html(
        '<a class="mono" href="{}">{}</a>',
        url("/flow", {"id": flow_id, "pk": partition_key}),
        flow_id if text is None else text,
    )


def flash(message: str | None, ok: bool = True) -> Html:
    if not message:
        return Html("")
    return html('<div class="flash {}" role="status">{}</div>', "ok" if ok else "bad", message)


# -- overview --------------------------------------------------------------------------


def overview_page(chrome: Chrome, ov: Overview) -> Html:
    t = ov.totals
    cards = join(
        html(
            '<div class="card"><div class="label">{}</div><div class="value" id="{}">{}</div>'
            '<div class="hint">{}</div></div>',
            label,
            ident,
            value,
            hint,
        )
        for label, ident, value, hint in (
            ("Flows", "fig-flows", f"{t['flows']:,}", "held by all shards"),
            ("Requests / s", "fig-rps", "-", "answered by the shards"),
            ("Commits / s", "fig-cps", "-", "group commits"),
            ("Records / commit", "fig-per-commit", "-", "batching, since last poll"),
            ("fdatasync", "fig-sync", "-", "mean, since last poll"),
            ("Queue depth", "fig-queue", f"{t['queue_depth']:,}", "requests waiting"),
            ("Courier backlog", "fig-outbox", f"{t['outbox']:,}", "cross-shard messages"),
            ("Log size", "fig-log", size(t["log_bytes"]), f"{t['merges']} merges run"),
        )
    )
    body = html(
        """<div data-live="{}">
<h1>Overview</h1>
<p class="sub"><span class="live-dot"></span><span id="live-status">live</span> · updated every
{} s · engine time {} <a href="/" id="live-new" hidden>· new types or states: reload</a></p>
<div class="grid cards">{}</div>
<div class="panel"><h2>Throughput</h2><canvas id="spark" class="spark"></canvas></div>
<div class="panel"><h2>Flows by type and state</h2>{}</div>
<div class="grid two">
<div class="panel"><h2>Stuck flows <span class="muted">(lease expired, not reclaimed)</span>
</h2>{}</div>
<div class="panel"><h2>Recent failures</h2>{}</div>
</div>
<div class="panel"><h2>Shards</h2>{}</div>
</div>""",
        chrome.refresh_ms,
        f"{chrome.refresh_ms / 1000:g}",
        when(ov.now_ms),
        cards,
        counts_table(ov.counts, ov.states),
        flows_table(ov.stuck, ov.now_ms, ("id", "type", "state", "lease", "owner"))
        if ov.stuck
        else Html('<p class="empty">None: every running flow holds a live lease.</p>'),
        flows_table(ov.failures, ov.now_ms, ("id", "type", "ended", "attempts", "error"))
        if ov.failures
        else Html('<p class="empty">No failed flows.</p>'),
        shards_table(ov.shards),
    )
    return page(chrome, "Overview", "overview", body)


def counts_table(counts: Mapping[str, Mapping[str, int]], states: Sequence[str]) -> Html:
    if not counts:
        return Html('<p class="empty">No flows yet.</p>')
    head = join(html('<th class="num">{}</th>', s) for s in states)
    rows = []
    for flow_type, per in counts.items():
        cells = []
        for state in states:
            n = per.get(state, 0)
            link = url("/flows", {"type": flow_type, "state": state})
            cells.append(
                html(
                    '<td class="num {}" data-count="{}"><a href="{}">{}</a></td>',
                    "" if n else "zero",
                    json.dumps([flow_type, state], separators=(",", ":"), ensure_ascii=False),
                    link,
                    f"{n:,}" if n else "·",
                )
            )
        rows.append(
            html(
                '<tr><td><a href="{}">{}</a></td>{}<td class="num" data-total="{}">{}</td></tr>',
                url("/flows", {"type": flow_type}),
                flow_type,
                join(cells),
                flow_type,
                f"{sum(per.values()):,}",
            )
        )
    return html(
        '<table class="counts"><thead><tr><th>type</th>{}<th class="num">total</th></tr></thead>'
        "<tbody>{}</tbody></table>",
        head,
        join(rows),
    )


def shards_table(shards: Sequence[Mapping[str, Any]]) -> Html:
    rows = join(
        html(
            "<tr><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>"
            "<td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>"
            "<td class=num>{}</td><td>{}</td><td>{}</td></tr>",
            s["index"],
            f"{s['flows']:,}",
            f"{s['requests']:,}",
            f"{s['commits']:,}",
            s["mean_batch"],
            s["queue_depth"],
            s["outbox"],
            size(s["log_bytes"]),
            s["segments"],
            s.get("sync_via") or "-",
            badge("failed", "broken") if s["broken"] else badge("completed", "healthy"),
        )
        for s in shards
    )
    return html(
        "<table><thead><tr><th>shard</th><th class=num>flows</th><th class=num>requests</th>"
        "<th class=num>commits</th><th class=num>frames/commit</th><th class=num>queue</th>"
        "<th class=num>outbox</th><th class=num>log</th><th class=num>segments</th>"
        '<th title="how commits reach the disk">fdatasync</th>'
        "<th>health</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )


_COLUMNS: dict[str, tuple[str, bool]] = {
    # column -> (heading, numeric)
    "id": ("id", False),
    "type": ("type", False),
    "state": ("state", False),
    "attempts": ("attempts", True),
    "updated": ("updated", False),
    "ended": ("ended", False),
    "due": ("due", False),
    "lease": ("lease expired", False),
    "owner": ("owner", False),
    "error": ("error", False),
    "parent": ("parent", False),
}


def flows_table(flows: Sequence[Flow], now_ms: int, columns: Sequence[str]) -> Html:
    head = join(
        html('<th class="{}">{}</th>', "num" if _COLUMNS[c][1] else "", _COLUMNS[c][0])
        for c in columns
    )
    rows = join(html("<tr>{}</tr>", join(_cell(f, c, now_ms) for c in columns)) for f in flows)
    return html(
        '<table class="flows"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, rows
    )


def _cell(f: Flow, column: str, now_ms: int) -> Html:
    if column == "id":
        return html("<td class=id>{}</td>", flow_link(f.id, f.partition_key))
    if column == "type":
        return html("<td>{}</td>", f.type)
    if column == "state":
        sub = html(' <span class="muted">{}</span>', f.run_state) if f.run_state else ""
        return html("<td>{}{}</td>", badge(f.state), sub)
    if column == "attempts":
        return html("<td class=num>{}</td>", f.attempts)
    if column in ("updated", "ended"):
        return html("<td>{}</td>", when(f.updated_at_ms, now_ms))
    if column == "due":
        return html("<td>{}</td>", when(f.next_run_at_ms, now_ms))
    if column == "lease":
        return html("<td>{}</td>", when(f.lease_deadline_ms, now_ms))
    if column == "owner":
        return html("<td class=mono>{}</td>", f.lease_owner or "")
    if column == "error":
        text = preview(f.error, cap=90).text if f.error is not None else ""
        return html('<td class="mono">{}</td>', text)
    if column == "parent":
        return html("<td class=id>{}</td>", flow_link(f.parent_id) if f.parent_id else "")
    raise AssertionError(column)  # pragma: no cover


# -- the list --------------------------------------------------------------------------


def list_page(chrome: Chrome, fl: FlowList, now_ms: int, error: str | None = None) -> Html:
    flt = fl.filter
    type_options = join(
        html('<option value="{}"{}>{}</option>', t, Html(" selected") if t == flt.type else "", t)
        for t in ["", *fl.types]
    )
    state_choices = ["", *fl.states]
    if "terminal" not in state_choices:
        state_choices.append("terminal")
    state_options = join(
        html(
            '<option value="{}"{}>{}</option>',
            s,
            Html(" selected") if s == flt.state else "",
            s or "(first with flows)",
        )
        for s in state_choices
    )
    form = html(
        """<form class="filters" method="get" action="/flows" id="filters">
<label>type<select name="type" id="f-type">{}</select></label>
<label>state<select name="state" id="f-state">{}</select></label>
<label>parent id<input name="parent" value="{}"></label>
<label>root id<input name="root" value="{}"></label>
<label>correlation id<input name="correlation" value="{}"></label>
<label>updated from (UTC or ms)<input name="from_ms" value="{}"
 placeholder="2026-12-03T08:00"></label>
<label>updated until (UTC or ms)<input name="to_ms" value="{}"></label>
<button type="submit" id="f-apply">Filter</button>
<a class="button ghost" href="/flows">Reset</a>
</form>
<form class="filters open" method="get" action="/flow">
<label>open a flow by id<input name="id" placeholder="flow id" id="f-id"></label>
<label>partition key<input name="pk" placeholder="(if any)"></label>
<button type="submit" class="ghost">Open</button></form>""",
        type_options,
        state_options,
        flt.parent,
        flt.root,
        flt.correlation,
        flt.from_ms if flt.from_ms is not None else "",
        flt.to_ms if flt.to_ms is not None else "",
    )
    if fl.flows:
        table = flows_table(
            fl.flows, now_ms, ("id", "type", "state", "attempts", "updated", "due", "parent")
        )
    else:
        table = Html('<p class="empty">No flows match.</p>')
    more = (
        html(
            '<a class="button ghost" href="{}">Next page →</a>',
            url("/flows", flt.as_query(cursor=fl.cursor)),
        )
        if fl.cursor
        else Html('<span class="muted">end of list</span>')
    )
    first = (
        html('<a href="{}">← first page</a>', url("/flows", flt.as_query(cursor=None)))
        if flt.cursor
        else Html("<span></span>")
    )
    body = html(
        """<h1>Flows</h1>{}
<div class="panel">{}</div>
<div class="panel">{}{}<div class="pager">{}<span class="muted">{} shown</span>{}</div></div>""",
        flash(error, ok=False),
        form,
        table,
        html('<p class="note">{}</p>', fl.note) if fl.note else "",
        first,
        len(fl.flows),
        more,
    )
    return page(chrome, "Flows", "flows", body)


# -- one flow --------------------------------------------------------------------------


def flow_page(
    chrome: Chrome, d: FlowDetail, now_ms: int, message: str | None = None, ok: bool = True
) -> Html:
    f = d.flow
    pk = f.partition_key
    fields = [
        (
            "state",
            html(
                "{} {}",
                badge(f.state),
                html('<span class="muted">working on {}</span>', f.run_state)
                if f.run_state
                else "",
            ),
        ),
        ("type", html("{}", f.type)),
        ("version", html("{}", f.version)),
        ("attempts", html("{}", f.attempts)),
        ("reclaims", html("{}", f.reclaims)),
        ("fencing token", html("{}", f.fencing_token)),
        ("priority", html("{}", f.priority)),
        ("created", when(f.created_at_ms, now_ms)),
        ("updated", when(f.updated_at_ms, now_ms)),
        ("due", when(f.next_run_at_ms, now_ms)),
        ("lease owner", html('<span class="mono">{}</span>', f.lease_owner or "—")),
        ("lease until", when(f.lease_deadline_ms, now_ms)),
        ("partition key", html('<span class="mono">{}</span>', pk or "—")),
    ]
    record = html(
        '<dl class="fields">{}</dl>', join(html("<dt>{}</dt><dd>{}</dd>", k, v) for k, v in fields)
    )
    lineage = html(
        '<dl class="fields"><dt>parent</dt><dd>{}</dd><dt>root</dt><dd>{}</dd>'
        "<dt>correlation</dt><dd>{}</dd><dt>descendants</dt><dd>{}</dd></dl>",
        flow_link(f.parent_id) if f.parent_id else Html('<span class="muted">none</span>'),
        flow_link(f.root_id) if f.root_id != f.id else Html('<span class="muted">itself</span>'),
        html(
            '<a class="mono" href="{}">{}</a>',
            url("/flows", {"correlation": f.correlation_id}),
            f.correlation_id,
        )
        if f.correlation_id
        else Html('<span class="muted">none</span>'),
        html('<a href="{}">all flows under this root</a>', url("/flows", {"root": f.root_id})),
    )
    attributes = (
        html(
            "<table><tbody>{}</tbody></table>",
            join(
                html("<tr><td class=mono>{}</td><td class=mono>{}</td></tr>", k, v)
                for k, v in sorted(f.attributes.items())
            ),
        )
        if f.attributes
        else Html('<p class="empty">No attributes.</p>')
    )
    blobs = join(
        _blob(label, data, f.payload_size if label == "payload" else None)
        for label, data in (("payload", f.payload), ("result", f.result), ("error", f.error))
        if data is not None or (label == "payload" and f.payload_size)
    ) or Html('<p class="empty">No payload, result or error.</p>')
    body = html(
        """<p class="sub"><a href="/flows">Flows</a> &rsaquo; <a href="{}">{}</a></p>
<h1>Flow <span class="id">{}</span> {}</h1>{}
{}
<div class="grid two">
<div class="panel"><h2>Record</h2>{}</div>
<div>
<div class="panel"><h2>Lineage</h2>{}</div>
<div class="panel"><h2>Attributes</h2>{}</div>
</div></div>
<div class="panel"><h2>Payload, result, error</h2>{}</div>
<div class="grid two">
<div class="panel"><h2>History <span class="muted">({} events)</span></h2>{}</div>
<div>
<div class="panel"><h2>Named values</h2>{}</div>
<div class="panel"><h2>Children</h2>{}</div>
</div></div>
{}""",
        url("/flows", {"type": f.type, "state": f.state}),
        f.type,
        f.id,
        badge(f.state),
        flash(message, ok),
        "" if chrome.read_only else actions_panel(f, d.history),
        record,
        lineage,
        attributes,
        blobs,
        len(d.history),
        timeline(f, d.history, now_ms, chrome.read_only),
        values_panel(f),
        children_panel(d),
        asl_panel(d) if d.asl_steps is not None else "",
    )
    return page(chrome, f"Flow {f.id}", "flows", body)


def _blob(label: str, data: bytes | None, known_size: int | None) -> Html:
    if data is None:
        return html("<h3>{}</h3><p class=muted>{} bytes, not loaded</p>", label, known_size)
    p: Preview = preview(data, size=known_size)
    return html(
        '<div class="blob"><div class="muted">{} · {} · {} bytes{}</div>'
        '<pre id="{}">{}</pre></div>',
        label,
        p.kind,
        p.size,
        " (truncated)" if p.truncated else "",
        f"blob-{label}",
        p.text,
    )


def actions_panel(f: Flow, history: Sequence[HistoryEvent]) -> Html:
    def link(action: str, label: str, style: str = "ghost", **params: object) -> Html:
        return html(
            '<a class="button {}" id="act-{}" href="{}">{}</a>',
            style,
            action,
            url("/confirm", {"do": action, "id": f.id, "pk": f.partition_key, **params}),
            label,
        )

    buttons = []
    if not f.terminal:
        buttons.append(link("cancel", "Cancel…", "danger"))
    if f.state == "failed" and latest_live_event(history) is not None:
        buttons.append(link("retry", "Retry…", ""))
    if not f.terminal:
        buttons.append(link("signal", "Send a signal…"))
    note = Html('<span class="muted">Rewind: choose an event in the history.</span>')
    return html(
        '<div class="panel"><h2>Actions</h2><div class="actions">{} {}</div></div>',
        join(buttons, " "),
        note,
    )


def timeline(f: Flow, events: Sequence[HistoryEvent], now_ms: int, read_only: bool) -> Html:
    if not events:
        return Html('<p class="empty">No stored history (trimmed by history_max_events).</p>')
    items = []
    for e in reversed(events):  # newest first
        meta = ", ".join(f"{k}={v}" for k, v in e.meta.items())
        kind = (
            "ok"
            if e.state == "completed"
            else "bad"
            if e.state == "failed"
            else ("off" if e.state == "cancelled" else "run" if e.state == "running" else "")
        )
        rewind = (
            ""
            if read_only or e.version == f.version or f.lease_token is not None
            else html(
                ' <a class="rewind" data-version="{}" href="{}">rewind here…</a>',
                e.version,
                url(
                    "/confirm",
                    {"do": "rewind", "id": f.id, "pk": f.partition_key, "version": e.version},
                ),
            )
        )
        items.append(
            html(
                '<li class="{}"><div class="head"><span class="ev">{}</span> {}{} '
                '<span class="muted">v{} · attempt {} · fencing {}</span> {}{}</div>{}</li>',
                kind,
                e.name,
                badge(e.state),
                html(' <span class="muted">{}</span>', e.run_state) if e.run_state else "",
                e.version,
                e.attempts,
                e.fencing_token,
                when(e.at_ms, now_ms),
                rewind,
                html('<div class="meta">{}</div>', meta) if meta else "",
            )
        )
    return html('<ol class="timeline">{}</ol>', join(items))


def values_panel(f: Flow) -> Html:
    if not f.value_sizes:
        return Html('<p class="empty">No named values.</p>')
    rows = []
    for i, (name, n) in enumerate(sorted(f.value_sizes.items())):
        target = f"value-{i}"
        rows.append(
            html(
                '<tr><td class=mono>{}</td><td class=num>{}</td><td><button class="ghost" '
                'data-value="{}" data-target="{}">show</button></td></tr>'
                '<tr><td colspan=3 style="padding:0"><pre id="{}" hidden></pre></td></tr>',
                name,
                size(n),
                url("/api/value", {"id": f.id, "name": name, "pk": f.partition_key}),
                target,
                target,
            )
        )
    return html(
        "<table><thead><tr><th>name</th><th class=num>size</th><th></th></tr></thead>"
        "<tbody>{}</tbody></table>",
        join(rows),
    )


def children_panel(d: FlowDetail) -> Html:
    if not d.children:
        return Html('<p class="empty">No children.</p>')
    rows = join(
        html(
            "<tr><td class=id>{}</td><td class=mono>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            flow_link(ch.id),
            ch.group_id,
            ch.type,
            badge(d.child_flows[ch.id].state)
            if ch.id in d.child_flows
            else Html('<span class="muted">elsewhere</span>'),
            badge(ch.state) if ch.state != "pending" else Html("<span class=muted>pending</span>"),
        )
        for ch in d.children
    )
    return html(
        "<table><thead><tr><th>id</th><th>group</th><th>type</th><th>state</th>"
        "<th>counted by parent</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )


def asl_panel(d: FlowDetail) -> Html:
    """The step view: an ASL execution's step chunks, or a code workflow's journal."""
    steps = d.asl_steps or []
    code = d.steps_of == "code"
    title = "Code workflow journal" if code else "ASL steps"
    if not steps:
        return html(
            '<div class="panel"><h2>{}</h2><p class="empty">No step stored yet.</p></div>', title
        )
    id_key, time_key = ("pos", "at") if code else ("id", "timestamp")
    rows = []
    for n, step in enumerate(steps, 1):
        for i, event in enumerate(step.events):
            details = {k: v for k, v in event.items() if k not in (id_key, "type", time_key)}
            rows.append(
                html(
                    "<tr><td class=num>{}</td><td class=num>{}</td><td>{}</td><td>{}</td>"
                    '<td class="mono">{}</td></tr>',
                    n if i == 0 else "",
                    event.get(id_key, ""),
                    event.get("type", ""),
                    when(event[time_key]) if isinstance(event.get(time_key), int) else "",
                    json_text(details)[:400] if details else "",
                )
            )
    return html(
        '<div class="panel"><h2>{} <span class="muted">({} steps, one chunk each)</span>'
        "</h2><table><thead><tr><th class=num>step</th><th class=num>{}</th><th>type</th>"
        "<th>at</th><th>details</th></tr></thead><tbody>{}</tbody></table></div>",
        title,
        len(steps),
        "position" if code else "event",
        join(rows),
    )


# -- confirmation ----------------------------------------------------------------------


def confirm_page(
    chrome: Chrome,
    action: str,
    f: Flow,
    params: Mapping[str, str],
    event: HistoryEvent | None = None,
) -> Html:
    hidden = {
        "do": action,
        "id": f.id,
        "pk": f.partition_key or "",
        "csrf": chrome.csrf,
        "fencing": str(f.fencing_token),
        "seen_state": f.state,
    }
    extra = Html("")
    if action == "cancel":
        what = html(
            "Cancel flow {} (now {})? Its children follow by their group's rule.{}",
            _bold_id(f),
            badge(f.state),
            " The flow is leased: this overrides the lease (recorded as forced)."
            if f.lease_token
            else "",
        )
        extra = Html('<label>reason (optional)<textarea name="reason"></textarea></label>')
        label, style = "Cancel the flow", "danger"
    elif action == "rewind":
        assert event is not None
        hidden["version"] = str(event.version)
        what = html(
            "Rewind flow {} to event v{} ({}, state {})? It becomes {} again, with that"
            " event's attempts, payload, result and error; the history keeps everything.",
            _bold_id(f),
            event.version,
            event.name,
            event.state,
            event.run_state or event.state,
        )
        label, style = f"Rewind to v{event.version}", ""
    elif action == "retry":
        what = html(
            "Retry failed flow {}? It is rewound to its newest live event{}.",
            _bold_id(f),
            f" (v{event.version}, {event.name})" if event else "",
        )
        label, style = "Retry the flow", ""
    else:
        what = html("Send a signal to flow {} (now {}).", _bold_id(f), badge(f.state))
        extra = html(
            '<label>signal name<input name="name" required value="{}"></label>'
            "<label>move to state (optional; only if the flow is still {})"
            '<input name="transition_to"></label>'
            "<label>named values (optional JSON object of strings)"
            '<textarea name="values" placeholder="{}"></textarea></label>',
            params.get("name", ""),
            f.logical_state,
            '{"approved": "yes"}',
        )
        label, style = "Send the signal", ""
    inputs = join(
        html('<input type="hidden" name="{}" value="{}">', k, v) for k, v in hidden.items()
    )
    body = html(
        """<p class="sub"><a href="{}">← back to the flow</a></p>
<div class="panel confirm"><h1>Confirm: {}</h1><p class="what">{}</p>
<p class="muted">Sent as an ordinary engine command, fenced by what this page shows: if
the flow moved on meanwhile, the engine refuses it and nothing changes.</p>
<form method="post" action="/action" class="grid" id="confirm-form">{}{}
<div class="actions"><button type="submit" class="{}" id="confirm">{}</button>
<a class="button ghost" href="{}">Keep it as it is</a></div></form></div>""",
        url("/flow", {"id": f.id, "pk": f.partition_key}),
        action,
        what,
        inputs,
        extra,
        style,
        label,
        url("/flow", {"id": f.id, "pk": f.partition_key}),
    )
    return page(chrome, f"Confirm {action}", "flows", body)


def _bold_id(f: Flow) -> Html:
    return html('<b class="mono">{}</b>', f.id)


def error_page(chrome: Chrome, status: int, title: str, message: str) -> Html:
    body = html(
        '<h1>{}</h1><div class="flash bad">{}</div><p><a href="/">Back to the overview</a></p>',
        title,
        message,
    )
    return page(chrome, title, "", body)
