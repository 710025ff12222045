"""Charts that compare brokers: per workload x scenario, the latency percentile plot of every
broker overlaid (HdrHistogram's percentile plot, on a log "nines" axis) and grouped bars of
throughput and e2e p50 / p99. Like ``reports.charts``, only plotly's JSON leaves this module.

The percentile plot merges each broker's repeats: the stored HdrHistograms (result.json
``figures.latency.<kind>.hdr``) are added into one, so its percentiles are those of every
message of every repeat, not a median of percentiles. The bars reuse the matrix's figures
(medians over the repeats).
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from hdrh.histogram import HdrHistogram
from plotly.subplots import make_subplots

from harness.collectors.latency import decode, new_histogram
from reports.charts import COLOURS, _text
from reports.load import TEST_DOUBLE_MARK, StoredRun
from reports.matrix import Row

NINES_TICKS: tuple[tuple[float, str], ...] = (
    (0.0, "0%"),
    (90.0, "90%"),
    (99.0, "99%"),
    (99.9, "99.9%"),
    (99.99, "99.99%"),
)
"""The percentiles labelled on the x axis: one decade of the nines axis apart."""
HIGHEST_PERCENTILE = 99.99
POINTS_PER_NINE = 20
"""Percentiles computed per decade of the nines axis: a smooth line, cheap to compute."""


def nines(percentile: float) -> float:
    """Where ``percentile`` (0 .. 100, below 100) sits on the nines axis: 1 / (1 - p), so
    p0 -> 1, p90 -> 10, p99 -> 100, p99.9 -> 1000, p99.99 -> 10000 (drawn on a log axis, each
    added nine one decade further right)."""
    if not 0.0 <= percentile < 100.0:
        raise ValueError(f"percentile {percentile} is not in [0, 100)")
    return 1.0 / (1.0 - percentile / 100.0)


def nines_percentiles(
    highest: float = HIGHEST_PERCENTILE, per_nine: int = POINTS_PER_NINE
) -> list[float]:
    """Percentiles from 0 up to ``highest``, evenly spaced on the nines axis (``per_nine`` to a
    decade), ``highest`` included."""
    steps = math.floor(math.log10(nines(highest)) * per_nine + 1e-9)
    found = [round(100.0 * (1.0 - 10.0 ** (-step / per_nine)), 6) for step in range(steps + 1)]
    return [p for p in found if p < highest] + [highest]


def merged_histogram(encoded: Iterable[str | None]) -> HdrHistogram | None:
    """The histograms (hdrh's base64, microseconds) added into one; None when none holds a
    count (nothing measured, or results written before this kind existed)."""
    merged = new_histogram()
    for text in encoded:
        if text:
            merged.add(decode(text))
    return merged if merged.get_total_count() else None


def percentile_curve(histogram: HdrHistogram, percentiles: Sequence[float]) -> list[float]:
    """Milliseconds at each of ``percentiles`` (HdrHistogram's convention: the highest value
    equivalent to the recorded one; p0 the lowest), in one pass over the histogram."""
    at = histogram.get_percentile_to_value_dict(list(percentiles))
    return [at[p] / 1000.0 for p in percentiles]


@dataclass(frozen=True)
class LatencyKind:
    """One line style of the percentile plot: a ``figures.latency`` key and its subplot."""

    key: str
    """``figures.latency.<key>`` of result.json."""
    panel: str
    """``e2e`` or ``publish``: the subplot it is drawn in."""
    corrected: bool
    """Measured from the intended send time (free of coordinated omission)."""

    @property
    def label(self) -> str:
        return "corrected" if self.corrected else "uncorrected"


PLOTTED_KINDS = (
    LatencyKind("e2e", "e2e", corrected=True),
    LatencyKind("e2e_uncorrected", "e2e", corrected=False),
    LatencyKind("publish_corrected", "publish", corrected=True),
    LatencyKind("publish", "publish", corrected=False),
)
PANELS = {"e2e": ("end-to-end latency (ms)", 1), "publish": ("publish latency (ms)", 2)}


def _histograms(runs: Sequence[StoredRun], key: str) -> HdrHistogram | None:
    return merged_histogram(getattr(run.figures.latency, key).hdr for run in runs)


def broker_label(row: Row, several_sources: bool) -> str:
    """The broker as a chart names it: its source when several folders are compared, and the
    test-double mark when its runs were against brokerbench's in-memory double."""
    label = f"{row.source}: {row.key.broker}" if several_sources else row.key.broker
    return f"{label} {TEST_DOUBLE_MARK}" if row.test_double else label


def broker_colours(labels: Iterable[str]) -> dict[str, str]:
    """A colour per broker label, in the order first seen: the same broker has the same colour
    in every comparison of the report."""
    found: dict[str, str] = {}
    for label in labels:
        found.setdefault(label, COLOURS[len(found) % len(COLOURS)])
    return found


def percentile_figure(
    rows: Sequence[Row], several_sources: bool = False, colours: Mapping[str, str] | None = None
) -> go.Figure:
    """e2e and publish latency by percentile, one colour per row (broker), solid corrected,
    dotted uncorrected; each trace's ``meta`` names its broker and kind."""
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                           subplot_titles=[title for title, _ in PANELS.values()])  # fmt: skip
    levels = nines_percentiles()
    x = [nines(p) for p in levels]
    colours = colours or broker_colours(broker_label(row, several_sources) for row in rows)
    for row in rows:
        broker = broker_label(row, several_sources)
        colour = colours[broker]
        for kind in PLOTTED_KINDS:
            histogram = _histograms(row.runs, kind.key)
            if histogram is None:
                continue
            name = _text(f"{broker} {kind.panel} {kind.label}")
            figure.add_trace(
                go.Scatter(
                    x=x, y=percentile_curve(histogram, levels), customdata=levels, name=name,
                    legendgroup=_text(broker), mode="lines",
                    line={"color": colour, "dash": "solid" if kind.corrected else "dot",
                          "width": 2 if kind.corrected else 1.5},
                    meta={"broker": broker, "kind": kind.key},
                    hovertemplate=f"{name}<br>p%{{customdata}}: %{{y:,.2f}} ms<extra></extra>",
                ),
                row=1, col=PANELS[kind.panel][1],
            )  # fmt: skip
    figure.update_xaxes(
        type="log", range=[0, 4.05], title_text="percentile",
        tickvals=[nines(p) for p, _ in NINES_TICKS], ticktext=[t for _, t in NINES_TICKS],
    )  # fmt: skip
    figure.update_yaxes(rangemode="tozero", title_text="ms", col=1)
    figure.update_yaxes(rangemode="tozero", col=2)
    figure.update_layout(
        template="plotly_white", height=440, margin={"l": 60, "r": 20, "t": 60, "b": 40},
        legend={"orientation": "h", "y": -0.2}, hovermode="closest",
        updatemenus=[{
            "type": "buttons", "direction": "right", "x": 0.0, "xanchor": "left", "y": 1.22,
            "showactive": True, "pad": {"r": 0, "t": 0},
            "buttons": [
                {"label": f"latency axis: {scale}", "method": "relayout",
                 "args": [{"yaxis.type": scale, "yaxis2.type": scale}]}
                for scale in ("linear", "log")
            ],
        }],
    )  # fmt: skip
    return figure


BOUND_NOTE = "harness-bound in some repeats: these figures are the harness's, not the broker's"


def bars_figure(
    rows: Sequence[Row], several_sources: bool = False, colours: Mapping[str, str] | None = None
) -> go.Figure:
    """Received msg/s, and e2e p50 / p99 ms, one bar per row (broker) in its colour: the
    matrix's medians over the repeats. Harness-bound rows are hatched."""
    brokers = [broker_label(row, several_sources) for row in rows]
    labels = [_text(broker) for broker in brokers]
    colours = colours or broker_colours(brokers)
    hatch = ["/" if row.bound_runs else "" for row in rows]
    notes = [_text(BOUND_NOTE) if row.bound_runs else "" for row in rows]
    titles = ("received (msg/s, median)", "end-to-end latency (ms, median): p50 | p99")
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=titles)
    bars = (
        (1, "received msg/s", "received msg/s", 1.0),
        (2, "e2e p50 ms", "e2e p50", 0.45),
        (2, "e2e p99 ms", "e2e p99", 1.0),
    )
    for col, column, name, opacity in bars:
        values = [row.figures.get(column) for row in rows]
        figure.add_trace(
            go.Bar(
                x=labels, y=values, name=name, opacity=opacity, customdata=notes,
                marker={"color": [colours[b] for b in brokers], "pattern": {"shape": hatch}},
                text=[name.removeprefix("e2e ") if col == 2 else "" for _ in rows],
                textposition="inside", insidetextanchor="end",
                meta={"column": column, "brokers": brokers},
                hovertemplate=f"%{{x}}<br>{name}: %{{y:,.2f}}<br>%{{customdata}}<extra></extra>",
            ),
            row=1, col=col,
        )  # fmt: skip
    figure.update_layout(
        template="plotly_white", height=340, barmode="group", showlegend=False,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
    )  # fmt: skip
    figure.update_yaxes(rangemode="tozero")
    return figure


@dataclass(frozen=True)
class Comparison:
    """One workload x scenario: its rows (one per broker, and per source) and their figures."""

    workload: str
    scenario: str
    rows: list[Row]
    percentiles: go.Figure
    bars: go.Figure


def comparisons(rows: Sequence[Row], several_sources: bool = False) -> list[Comparison]:
    """One comparison per workload x scenario, its brokers in the matrix's order."""
    colours = broker_colours(broker_label(row, several_sources) for row in rows)
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.key.workload, row.key.scenario), []).append(row)
    return [
        Comparison(workload, scenario, group, percentile_figure(group, several_sources, colours),
                   bars_figure(group, several_sources, colours))
        for (workload, scenario), group in groups.items()
    ]  # fmt: skip
