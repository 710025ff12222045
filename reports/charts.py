"""Plotly figures per matrix row: throughput, end-to-end latency, lag and CPU (machine,
harness, broker) over time, with each fault window shaded. Only plotly's JSON leaves this
module; the HTML embeds plotly.js once."""

import html
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from harness.collectors.saturation import HARNESS_ROLES
from reports.load import StoredRun
from reports.matrix import Row

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _text(untrusted: str) -> str:
    """plotly.js renders a subset of HTML in labels: make any markup show as text."""
    return html.escape(untrusted, quote=False)


def _seconds_since(run: StoredRun, time_ns: int | None) -> float | None:
    origin = run.figures.series.origin_ns
    if time_ns is None or origin is None:
        return None
    return (time_ns - origin) / 1e9


def _lag_times(run: StoredRun) -> tuple[list[float], list[int | None]]:
    lag = run.figures.lag
    offset = _seconds_since(run, lag.first_ns) or 0.0
    return [t + offset for t, _ in lag.samples], [backlog for _, backlog in lag.samples]


def _cores(run: StoredRun) -> list[tuple[list[float], list[Any], str]]:
    """(x, cores busy, label) of the machine, the harness and the broker from the saturation
    series (none for results without one)."""
    if run.saturation is None:
        return []
    saturation = run.saturation.series
    if not isinstance(saturation.get("t"), list):
        return []
    offset = _seconds_since(run, saturation.get("origin_ns")) or 0.0
    x = [t + offset for t in saturation["t"]]
    cpus = float(run.saturation.cpu_count or 1)
    found = saturation.get("cpu_percent")
    roles = found if isinstance(found, dict) else {}

    def cores(values: Any, scale: float) -> list[float | None]:
        numbers = values if isinstance(values, list) else []
        return [v * scale / 100 if isinstance(v, int | float) else None for v in numbers]

    present = [roles[r] for r in HARNESS_ROLES if isinstance(roles.get(r), list)]
    harness = [
        sum(v for v in values if isinstance(v, int | float))
        for values in zip(*present, strict=False)
    ]
    return [
        (x, cores(saturation.get("machine_cpu_percent"), cpus), "machine CPU"),
        (x, cores(harness, 1.0), "harness CPU"),
        (x, cores(roles.get("broker"), 1.0), "broker CPU"),
    ]


def row_figure(row: Row) -> go.Figure:
    figure = make_subplots(
        rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.06,
        subplot_titles=("throughput (msg/s)", "end-to-end latency (ms)", "lag (messages)",
                        "CPU (cores busy)"),
    )  # fmt: skip
    for index, run in enumerate(row.runs):
        colour = COLOURS[index % len(COLOURS)]
        series = run.figures.series
        times = series.t
        name = f"r{run.repeat}"

        traces = (
            (1, times, series.sent, "sent", "solid"),
            (1, times, series.received, "received", "dot"),
            (2, times, series.e2e_p50_ms, "e2e p50", "solid"),
            (2, times, series.e2e_p99_ms, "e2e p99", "dot"),
            (3, *_lag_times(run), "lag", "solid"),
            *((4, x, y, label, dash) for (x, y, label), dash in
              zip(_cores(run), ("solid", "dot", "dash"), strict=False)),
        )  # fmt: skip
        for at, x, y, label, dash in traces:
            line = {"color": colour, "dash": dash, "width": 1.5}
            figure.add_trace(
                go.Scatter(x=x, y=y or [], name=f"{name} {label}", legendgroup=name,
                           mode="lines", line=line),
                row=at, col=1,
            )  # fmt: skip
        for fault in run.scenario.faults:
            start, end = _seconds_since(run, fault.start_ns), _seconds_since(run, fault.end_ns)
            if start is None:
                continue
            figure.add_vrect(
                x0=start, x1=end if end is not None else start, row="all", col=1,
                fillcolor="#d62728", opacity=0.12, line_width=0,
            )  # fmt: skip
            figure.add_annotation(
                x=start, y=1.0, xref="x", yref="paper", showarrow=False, xanchor="left",
                text=_text(f"{name} {fault.name}"), font={"size": 10, "color": "#d62728"},
            )  # fmt: skip
    figure.update_layout(
        template="plotly_white", height=800, margin={"l": 60, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.08},
    )  # fmt: skip
    figure.update_xaxes(title_text="seconds since start", row=4, col=1)
    return figure


def figure_json(figure: go.Figure) -> str:
    """plotly's JSON, which escapes <, > and / so it is safe inside a <script> element."""
    return str(pio.to_json(figure, validate=True))
