"""The DR report as one self-contained HTML page: tables plus inline SVG charts (freshness
of the newest recovery point vs the RPO target over time; drill RTO vs the RTO target).
No script at all and nothing loaded from outside the page."""

from __future__ import annotations

import html
import math
import time

from drfleet.plan.durations import format_duration

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 170, 56, 12, 14, 26

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2329;max-width:1100px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #e4e6ea;text-align:left}
th{background:#f3f4f6}.ok{color:#11742a;font-weight:600}.bad{color:#b3261e;font-weight:600}.muted{color:#6b7280}
.charts{display:flex;flex-wrap:wrap;gap:18px}.chart{border:1px solid #e4e6ea;padding:6px}
.chart h3{font-size:13px;margin:2px 0 4px}svg text{font:11px system-ui,sans-serif;fill:#4b5563}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _dur(seconds) -> str:
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    return sign + format_duration(abs(seconds))


def _when(epoch) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch)) if epoch else "-"


def _verdict(ok) -> str:
    if ok is None:
        return '<span class="muted">no data</span>'
    return '<span class="ok">met</span>' if ok else '<span class="bad">missed</span>'


NICE = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 30 * 86400)


def axis(values: list[float]) -> tuple[str, float, list[float]]:
    """("linear"|"log", top, ticks) for values in seconds: a log scale when they span more
    than two orders of magnitude (a 5-minute target beside a 2-day lag), so both stay
    readable; ticks at round durations (1s, 5m, 1h, 1d, ...)."""
    positive = [v for v in values if v > 0]
    top = max(positive + [1.0]) * 1.15
    low = min(positive) if positive else 1.0
    if top / max(low, 1.0) > 100:
        ticks = [t for t in NICE if max(low, 1.0) / 2 <= t <= top]
        return "log", top, ticks[:: max(1, len(ticks) // 5)]
    ticks = [t for t in NICE if top / 6 <= t <= top] or [top / 1.15]
    step = ticks[0]
    return "linear", top, [step * k for k in range(1, int(top // step) + 1)][:6]


def chart(title: str, start: float, end: float, target: float | None, *, line=None, points=None) -> str:
    """An SVG chart: x is time over [start, end] (dates at both ends and the middle); y is
    seconds, linear or logarithmic (``axis``), with ticks at round durations. ``line`` is a
    list of (t, seconds) drawn as a polyline; ``points`` a list of (t, seconds, ok) drawn as
    dots; the target is a dashed red line, with the area above it shaded."""
    values = [v for _, v in (line or [])] + [v for _, v, _ in (points or [])]
    scale, top, ticks = axis(values + ([target] if target else []))
    span = max(end - start, 1)

    def x(t):
        return PAD_L + (min(max(t, start), end) - start) / span * (W - PAD_L - PAD_R)

    def frac(v):
        if scale == "log":
            return math.log10(max(v, 1.0)) / math.log10(top)
        return v / top

    def y(v):
        return PAD_T + (1 - min(frac(v), 1.0)) * (H - PAD_T - PAD_B)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             f'role="img" aria-label="{_e(title)}" data-scale="{scale}">',
             f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_T - PAD_B}" '
             'fill="#fafbfc" stroke="#d0d4da"/>']
    if target is not None:
        parts.append(f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{y(target) - PAD_T:.1f}" '
                     'fill="#fde8e7"/>')
        parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(target):.1f}" y2="{y(target):.1f}" '
                     'stroke="#b3261e" stroke-dasharray="6 4" stroke-width="1.5"/>')
        parts.append(f'<text x="{W - PAD_R - 4}" y="{y(target) - 4:.1f}" text-anchor="end">target '
                     f'{_e(_dur(target))}</text>')
    for v in [0.0] + ticks:
        parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eceef1"/>')
        parts.append(f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_e(_dur(v))}</text>')
    parts.append(f'<text x="{PAD_L}" y="{H - 8}">{_e(_when(start))}</text>')
    parts.append(f'<text x="{(PAD_L + W - PAD_R) / 2:.0f}" y="{H - 8}" text-anchor="middle">'
                 f'{_e(_when((start + end) / 2))}</text>')
    parts.append(f'<text x="{W - PAD_R}" y="{H - 8}" text-anchor="end">{_e(_when(end))}</text>')
    if line:
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in line)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="#1f5fbf" stroke-width="2"/>')
    for t, v, ok in points or []:
        colour = "#11742a" if ok and (target is None or v <= target) else "#b3261e"
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="4.5" fill="{colour}"/>')
    if not line and not points:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data in this window</text>')
    parts.append("</svg>")
    return f'<div class="chart"><h3>{_e(title)}</h3>{"".join(parts)}</div>'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict) -> str:
    start, end = report["window"]["start"], report["window"]["end"]
    out = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>DR report: {_e(report['plan'])}"
           f"</title><style>{CSS}</style></head><body>",
           f"<h1>DR report: {_e(report['plan'])}</h1>",
           f"<p class=\"muted\">generated {_e(_when(report['generated_at']))} UTC; window {_e(_when(start))} to "
           f"{_e(_when(end))}</p>", "<h2>RPO: age of the newest verified recovery point</h2>"]
    out.append(_table(["dataset", "region", "target", "measured now", "margin", "", "peak in window", "trend"], [
        [_e(r["dataset"]), _e(r["region"]), _e(_dur(r["target_seconds"])), _e(_dur(r["lag_seconds"])),
         _e(_dur(r["margin_seconds"])), _verdict(r["met"]), _e(_dur(r["peak_seconds"])), _e(r["trend"])]
        for r in report["rpo"]]))
    out.append('<div class="charts">')
    for r in report["rpo"]:
        out.append(chart(f"{r['dataset']}: freshness vs RPO target", start, end, r["target_seconds"],
                         line=[tuple(p) for p in r["series"]]))
    out.append("</div><h2>RTO per scenario: runbook runs and drills</h2>")
    out.append(_table(["scenario", "target", "latest", "worst", "margin (worst)", "", "measured", "latest from"], [
        [_e(r["scenario"]), _e(_dur(r["target_seconds"])), _e(_dur(r["latest_seconds"])), _e(_dur(r["worst_seconds"])),
         _e(_dur(r["margin_seconds"])), _verdict(r["met"]), _e(r["measurements"]), _e(r["latest_source"] or "-")]
        for r in report.get("scenarios", [])]))
    out.append('<div class="charts">')
    for r in report.get("scenarios", []):
        if r["series"]:
            out.append(chart(f"{r['scenario']}: RTO vs target", start, end, r["target_seconds"],
                             points=[(t, v, True) for t, v in r["series"]]))
    out.append("</div>")
    if report.get("unmet"):
        out.append("<h2>Targets missed or without data</h2><ul>" +
                   "".join(f'<li class="bad">{_e(u)}</li>' for u in report["unmet"]) + "</ul>")
    out.append("<h2>RTO: measured by drills</h2>")
    out.append(_table(["dataset", "drill", "scenario", "target", "latest", "worst", "margin (latest)", "", "drills",
                       "trend"], [
        [_e(r["dataset"]), _e(r["drill"]), _e(r["scenario"]), _e(_dur(r["target_seconds"])),
         _e(_dur(r["latest_seconds"])), _e(_dur(r["worst_seconds"])), _e(_dur(r["margin_seconds"])),
         _verdict(None if r["margin_seconds"] is None else r["margin_seconds"] >= 0 and r["latest_ok"]),
         _e(r["drills"]), _e(r["trend"])] for r in report["rto"]]) if report["rto"]
        else '<p class="muted">no drill measured a recovery time in this window</p>')
    out.append('<div class="charts">')
    for r in report["rto"]:
        out.append(chart(f"{r['dataset']} ({r['drill']} drill): RTO vs target", start, end, r["target_seconds"],
                         points=[(t, v, True) for t, v in r["series"]]))
    out.append("</div><h2>Drills</h2>")
    out.append(_table(["kind", "scenario", "target", "latest result", "latest RTO", "worst RTO", "passed", "failed",
                       "not available", "latest reason"], [
        [_e(d["kind"]), _e(d["scenario"]), _e(_dur(d["target_seconds"])),
         f'<span class="{"ok" if d["latest_result"] == "passed" else "bad"}">{_e(d["latest_result"])}</span>',
         _e(_dur(d["latest_seconds"])), _e(_dur(d["worst_seconds"])), _e(d["passed"]), _e(d["failed"]),
         _e(d["not_available"]), _e(d["latest_reason"])] for d in report["drills"]]))
    if report.get("month"):
        out.append(render_month(report["month"]))
    out.append("</body></html>")
    return "\n".join(out)


def render_month(m: dict) -> str:
    b, d, i = m["backups"], m["drills"], m["integrity"]

    def pct(v):
        return "-" if v is None else f"{v * 100:.1f}%"
    rows = [["backup success rate", f"{pct(b['success_rate'])} ({b['succeeded']} of {b['runs']})"],
            ["backup completion time (median / p95 / max)",
             " / ".join(_dur(b["completion_seconds"][k]) for k in ("median", "p95", "max"))],
            ["drills (passed / failed / not available)", f"{d['passed']} / {d['failed']} / {d['not_available']}"],
            ["recovery time (median / max)", " / ".join(_dur(d["recovery_seconds"][k]) for k in ("median", "max"))],
            ["integrity checks ok", f"{pct(i['ok_rate'])} ({i['ok']} of {i['verifications']}; "
                                    f"{i['damaged']} damaged, {i['size_anomalies']} size anomalies)"]]
    return f"<h2>Monthly review {_e(m['month'])}</h2>" + _table(["metric", "value"], [[_e(a), _e(v)] for a, v in rows])
