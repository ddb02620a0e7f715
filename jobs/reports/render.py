"""Render a :class:`~jobs.reports.rewards.RewardAudit` to files: PNG plots (matplotlib, no
display needed), one self-contained HTML page with the plots embedded as base64, and
``report.json`` with every number.

An empty section (no rollouts, no second snapshot, no spread in the rewards) says so in the
page instead of drawing an empty plot.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from jobs.reports.rewards import DimensionStats, RewardAudit, ScoredRow

COLORS = {
    "a": "#2b6cb0",
    "b": "#dd6b20",
    "ok": "#38a169",
    "missing": "#a0aec0",
    "failed": "#e53e3e",
}


@dataclass(frozen=True)
class Plot:
    name: str
    title: str
    png: bytes


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    json: Path
    pngs: tuple[Path, ...]


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _grid(count: int, columns: int = 3) -> tuple[int, int]:
    cols = min(columns, max(count, 1))
    return math.ceil(max(count, 1) / cols), cols


# -- plots ------------------------------------------------------------------------------------


def plot_histograms(audit: RewardAudit) -> Plot:
    dims = audit.dimensions
    other = {d.dimension: d for d in audit.vs_dimensions}
    rows, cols = _grid(len(dims))
    figure = Figure(figsize=(4.2 * cols, 2.8 * rows))
    width = 1.0 / audit.bins
    lefts = [i * width for i in range(audit.bins)]
    for i, dim in enumerate(dims):
        ax = figure.add_subplot(rows, cols, i + 1)
        label_a = f"{audit.snapshot} (n={dim.ok})"
        ax.bar(
            lefts,
            dim.counts,
            width=width,
            align="edge",
            color=COLORS["a"],
            alpha=0.7,
            label=label_a,
            edgecolor="white",
        )
        base = other.get(dim.dimension)
        if base is not None and base.ok:
            edges = [*lefts, 1.0]
            ax.stairs(
                base.counts,
                edges,
                color=COLORS["b"],
                linewidth=2,
                label=f"{audit.vs} (n={base.ok})",
            )
        if not dim.ok and (base is None or not base.ok):
            ax.set_ylim(0, 1)
            ax.set_yticks([])
            ax.text(
                0.5,
                0.5,
                f"no judged scores\n{dim.missing} missing, {dim.failed} failed",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="#4a5568",
            )
        ax.set_xlim(0, 1)
        ax.set_title(dim.dimension, fontsize=10)
        ax.set_xlabel("score", fontsize=8)
        ax.set_ylabel("rows", fontsize=8)
        ax.tick_params(labelsize=7)
        if dim.ok or (base is not None and base.ok):
            ax.legend(fontsize=7)
    figure.suptitle("Judged scores per reward dimension (missing and failed are not counted)")
    figure.tight_layout()
    return Plot("histograms", "Reward histograms per dimension", _png(figure))


def plot_judge_status(audit: RewardAudit) -> Plot:
    dims = audit.dimensions
    figure = Figure(figsize=(8, 0.45 * len(dims) + 1.4))
    ax = figure.add_subplot()
    names = [d.dimension for d in dims]
    left = [0] * len(dims)
    for status in ("ok", "missing", "failed"):
        values = [getattr(d, status) for d in dims]
        ax.barh(names, values, left=left, color=COLORS[status], label=status)
        left = [x + v for x, v in zip(left, values, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("reward rows")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_title("Judge outcomes per dimension")
    figure.tight_layout()
    return Plot("judge_status", "Judge outcomes per dimension", _png(figure))


def _scatter(rows: Sequence[ScoredRow], x: Callable[[ScoredRow], int], xlabel: str) -> Figure:
    figure = Figure(figsize=(6.4, 4))
    ax = figure.add_subplot()
    for table, color in (("trajectories", COLORS["a"]), ("rollouts", COLORS["b"])):
        points = Counter((x(r), round(r.reward, 4)) for r in rows if r.table == table)
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        sizes = [18 + 14 * math.sqrt(n) for n in points.values()]
        ax.scatter(xs, ys, s=sizes, alpha=0.55, color=color, label=f"{table} (area ~ rows)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("reward")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_reward_vs_length(audit: RewardAudit) -> Plot:
    figure = _scatter(
        audit.scored, lambda r: r.chars, "length (characters of message text and call arguments)"
    )
    figure.axes[0].set_title("Reward vs trajectory length")
    return Plot("reward_vs_length", "Reward vs trajectory length", _png(figure))


def plot_reward_vs_calls(audit: RewardAudit) -> Plot:
    figure = _scatter(audit.scored, lambda r: r.tool_calls, "tool calls")
    figure.axes[0].set_title("Reward vs tool-call count")
    return Plot("reward_vs_calls", "Reward vs tool-call count", _png(figure))


def plot_environments(audit: RewardAudit) -> Plot:
    envs = audit.environments
    figure = Figure(figsize=(8, 0.4 * len(envs) + 1.5))
    ax = figure.add_subplot()
    labels = [f"{e.environment_id[:16]} ({e.domain}, n={e.rollouts})" for e in envs]
    ax.barh(
        labels,
        [e.mean for e in envs],
        xerr=[math.sqrt(e.variance) for e in envs],
        color=COLORS["a"],
        ecolor="#1a202c",
        capsize=3,
    )
    for i, env in enumerate(envs):
        ax.text(
            min(env.mean, 0.8) + 0.01,
            i,
            f"{env.mean:.3f} ± {math.sqrt(env.variance):.3f}",
            va="center",
            fontsize=7,
        )
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("mean rollout reward (bars: ± one standard deviation)")
    ax.tick_params(labelsize=7)
    ax.set_title("Reward per environment")
    figure.tight_layout()
    return Plot("environments", "Reward per environment", _png(figure))


def plot_groups(audit: RewardAudit) -> Plot:
    groups = audit.groups
    assert groups is not None
    figure = Figure(figsize=(6.4, 3.2))
    ax = figure.add_subplot()
    labels = ["all zero", "all one", "with signal", "incomplete"]
    values = [groups.all_zero, groups.all_one, groups.with_signal, groups.incomplete]
    colors = [COLORS["failed"], COLORS["b"], COLORS["ok"], COLORS["missing"]]
    ax.bar(labels, values, color=colors)
    for i, value in enumerate(values):
        share = value / groups.groups if groups.groups else 0.0
        ax.text(i, value, f"{value} ({share:.0%})", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("groups")
    ax.set_title(f"RL groups ({groups.groups}): wasted = all zero + all one")
    figure.tight_layout()
    return Plot("groups", "Wasted RL groups", _png(figure))


def plot_spam(audit: RewardAudit) -> Plot:
    signals = [s for s in audit.spam if len(s.points) >= 2]
    figure = Figure(figsize=(6.4 * len(signals), 3.8))
    for i, signal in enumerate(signals):
        ax = figure.add_subplot(1, len(signals), i + 1)
        xs = list(range(len(signal.points)))
        rewards = [p.mean_reward for p in signal.points]
        ax.plot(xs, rewards, marker="o", color=COLORS["a"], label="mean reward")
        ax.set_ylabel("mean reward", color=COLORS["a"])
        twin = ax.twinx()
        calls = [p.calls_per_solved for p in signal.points]
        twin.plot(
            xs,
            calls,
            marker="s",
            linestyle="--",
            color=COLORS["b"],
            label="calls per solved sub-task",
        )
        twin.set_ylabel("calls per solved sub-task", color=COLORS["b"])
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=7, loc="best")
        ax.set_xticks(xs, [p.label[-24:] for p in signal.points], fontsize=7, rotation=15)
        verdict = {True: "FLAGGED", False: "not flagged", None: "undecided"}[signal.flagged]
        ax.set_title(f"{signal.source}: {verdict}", fontsize=10)
    figure.tight_layout()
    return Plot("tool_spam", "Tool-spam signals", _png(figure))


def plot_drift(audit: RewardAudit) -> Plot:
    tested = [d for d in audit.drift if d.statistic is not None]
    rows, cols = _grid(len(tested))
    figure = Figure(figsize=(4.2 * cols, 2.8 * rows))
    for i, test in enumerate(tested):
        ax = figure.add_subplot(rows, cols, i + 1)
        for cdf, n, color, style, name in (
            (test.cdf_a, test.n_a, COLORS["a"], "-", audit.snapshot),
            (test.cdf_b, test.n_b, COLORS["b"], "--", audit.vs),
        ):
            xs = [0.0, *(x for x, _ in cdf), 1.0]
            ys = [0.0, *(y for _, y in cdf), 1.0]
            ax.step(
                xs,
                ys,
                where="post",
                color=color,
                linestyle=style,
                linewidth=2,
                label=f"{name} (n={n})",
            )
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("score", fontsize=8)
        ax.set_ylabel("share of scores ≤ x", fontsize=8)
        ax.set_title(f"{test.dimension}\nD={test.statistic:.3f} p={test.p_value:.3g}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    figure.suptitle("Empirical CDFs, snapshot vs --vs (two-sample Kolmogorov–Smirnov)")
    figure.tight_layout()
    return Plot("drift", "Drift between snapshots", _png(figure))


# -- HTML -------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #1a202c;
  padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #cbd5e0; padding-top: .6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .85em; }
th, td { border: 1px solid #e2e8f0; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #edf2f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: .6em 0; border: 1px solid #e2e8f0; }
code { background: #f7fafc; padding: 0 .2em; font-size: .9em; }
.empty { color: #4a5568; font-style: italic; } .flag { color: #c53030; font-weight: bold; }
.meta { color: #4a5568; } nav a { margin-right: 1em; }
.row { display: flex; gap: 1em; flex-wrap: wrap; } .row img { max-width: 49%; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 and value else f"{value:.{digits}f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, RawHtml):
                cells.append(f"<td>{cell.text}</td>")
            elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
                cells.append(f'<td class="num">{_e(_fmt(cell))}</td>')
            else:
                cells.append(f"<td>{_e(_fmt(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


@dataclass(frozen=True)
class RawHtml:
    text: str


def _img(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode()
    return f'<img id="plot-{plot.name}" alt="{_e(plot.title)}" src="data:image/png;base64,{data}">'


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _dimension_rows(dims: Sequence[DimensionStats]) -> list[list[Any]]:
    return [
        [d.dimension, ", ".join(d.judge_models), d.ok, d.missing, d.failed, d.mean] for d in dims
    ]


def _anchor(row_id: str) -> str:
    return "lineage-" + "".join(c if c.isalnum() or c == "-" else "_" for c in row_id)


def render_html(audit: RewardAudit, plots: dict[str, Plot], generated: str) -> str:
    parts: list[str] = []
    add = parts.append
    vs = f" vs <code>{_e(audit.vs)}</code>" if audit.vs else ""
    add(f"<h1>Reward audit of snapshot <code>{_e(audit.snapshot)}</code>{vs}</h1>")
    add(
        f'<p class="meta">lake <code>{_e(audit.lake)}</code>; written {_e(generated)}; '
        "every number is in <code>report.json</code> beside this page.</p>"
    )
    sections = [
        ("dimensions", "Reward distributions"),
        ("judges", "Judge missing/failed"),
        ("length", "Reward vs length and tool calls"),
        ("environments", "Per environment"),
        ("groups", "Wasted RL groups"),
        ("spam", "Tool-spam signals"),
        ("drift", "Drift"),
        ("outliers", "Outliers"),
    ]
    add("<nav>" + "".join(f'<a href="#{k}">{_e(t)}</a>' for k, t in sections) + "</nav>")
    for note in audit.notes:
        add(_empty(note))

    judged = sum(d.ok for d in audit.dimensions)
    unjudged = sum(d.missing + d.failed for d in audit.dimensions)
    add('<h2 id="dimensions">Reward distributions per dimension</h2>')
    add(
        f"<p>{judged} judged scores, {unjudged} reward rows without a score (missing or "
        f"failed; never counted as passes), in {audit.bins} equal bins over [0, 1]"
        + (f"; the orange outline is <code>{_e(audit.vs)}</code>." if audit.vs else ".")
        + "</p>"
    )
    add(_img(plots["histograms"]))
    add(
        _table(
            ["dimension", "judge", "ok", "missing", "failed", "mean of ok"],
            _dimension_rows(audit.dimensions),
        )
    )

    add('<h2 id="judges">Judge missing/failed counts</h2>')
    add(
        "<p><b>missing</b>: no judgment was made (e.g. the offline backend has no LLM judge); "
        "<b>failed</b>: the judge was asked and its answer was unusable. Neither has a "
        "score.</p>"
    )
    add(_img(plots["judge_status"]))
    failing = [d for d in audit.dimensions if d.missing or d.failed]
    add(
        _table(
            ["dimension", "missing", "failed", "share without score"],
            [[d.dimension, d.missing, d.failed, (d.missing + d.failed) / d.total] for d in failing],
        )
        if failing
        else _empty("every reward row was judged.")
    )

    add('<h2 id="length">Reward vs trajectory length and tool-call count</h2>')
    scored = sum(1 for r in audit.scored if r.table == "trajectories")
    add(
        f"<p>A trajectory's reward is the mean of its judged dimensions ({scored} "
        f"trajectories; {audit.unscored_trajectories} have no judged dimension and are left "
        f"out). Pearson r: with length {_e(_fmt(audit.correlation_length))}, with tool calls "
        f"{_e(_fmt(audit.correlation_calls))}. Rollouts (their F1 reward) are in orange.</p>"
    )
    add('<div class="row">' + _img(plots["reward_vs_length"]) + _img(plots["reward_vs_calls"]))
    add("</div>")

    add('<h2 id="environments">Reward per environment (RL rollouts)</h2>')
    if audit.environments:
        add(_img(plots["environments"]))
        add(
            _table(
                ["environment", "domain", "rollouts", "mean", "variance"],
                [
                    [e.environment_id, e.domain, e.rollouts, e.mean, e.variance]
                    for e in audit.environments
                ],
            )
        )
    else:
        add(
            _empty(f"snapshot {audit.snapshot!r} has no rollouts: nothing to show per environment.")
        )

    add('<h2 id="groups">Wasted RL groups</h2>')
    if audit.groups is not None:
        g = audit.groups
        add(
            f"<p>A group is one environment's rollouts under one policy; GRPO's advantages are "
            f"zero in a group whose rewards are all equal, so an all-zero or all-one group "
            f"teaches nothing. Wasted: <b>{g.wasted} of {g.groups}</b> "
            f"({_e(_fmt(g.wasted_share))}): all zero {_e(_fmt(g.all_zero_share))}, all one "
            f"{_e(_fmt(g.all_one_share))}.</p>"
        )
        add(_img(plots["groups"]))
    else:
        add(_empty(f"snapshot {audit.snapshot!r} has no rollouts: no RL groups to audit."))

    add('<h2 id="spam">Tool-spam signals</h2>')
    add(
        "<p>A policy that learns to spam calls raises its reward while its tool calls per "
        "solved sub-task rise too (ASTRA's recall-only reward collapses this way). Flagged "
        "when both are higher at the end of a series than at its start. Rollouts: sub-tasks "
        "solved = recall × the environment's sub-tasks, per policy step. Trajectories: a "
        "chain step is a sub-task, solved as far as <code>chain_coverage</code> found.</p>"
    )
    if audit.spam:
        if "tool_spam" in plots:
            add(_img(plots["tool_spam"]))
        for signal in audit.spam:
            verdict = {
                True: '<span class="flag">flagged</span>',
                False: "not flagged",
                None: "undecided (needs two points with solved sub-tasks)",
            }[signal.flagged]
            add(f"<p><b>{_e(signal.source)}</b>: {verdict}</p>")
            add(
                _table(
                    [
                        "point",
                        "rows",
                        "mean reward",
                        "tool calls",
                        "solved sub-tasks",
                        "calls per solved",
                    ],
                    [
                        [p.label, p.rows, p.mean_reward, p.calls, p.solved, p.calls_per_solved]
                        for p in signal.points
                    ],
                )
            )
    else:
        add(_empty("no rollouts and no --vs snapshot: no series to look for tool spam in."))

    add('<h2 id="drift">Drift between snapshots</h2>')
    if audit.vs is None:
        add(_empty("no --vs snapshot given: nothing to compare with."))
    else:
        add(
            f"<p>Per dimension, the judged scores of <code>{_e(audit.snapshot)}</code> (a) "
            f"against <code>{_e(audit.vs)}</code> (b): two-sample Kolmogorov–Smirnov D and "
            "its asymptotic p-value (conservative with tied scores); p &lt; 0.05 is marked "
            "drifted.</p>"
        )
        if "drift" in plots:
            add(_img(plots["drift"]))
        add(
            _table(
                [
                    "dimension",
                    "n a",
                    "n b",
                    "mean a",
                    "mean b",
                    "D",
                    "p-value",
                    "drifted",
                    "unjudged a",
                    "unjudged b",
                ],
                [
                    [
                        d.dimension,
                        d.n_a,
                        d.n_b,
                        d.mean_a,
                        d.mean_b,
                        d.statistic,
                        d.p_value,
                        d.drifted,
                        d.unjudged_share_a,
                        d.unjudged_share_b,
                    ]
                    for d in audit.drift
                ],
            )
        )

    add('<h2 id="outliers">Top outliers</h2>')
    if audit.outliers:
        add(
            "<p>The rows furthest from their table's mean reward (z = (reward − mean) / "
            "standard deviation). Each links to its lineage below; the command shows it in "
            "the terminal.</p>"
        )
        rows = []
        for o in audit.outliers:
            link = RawHtml(f'<a href="#{_anchor(o.row_id)}"><code>{_e(o.row_id)}</code></a>')
            judged = {k: v for k, v in o.dimension_scores.items() if v is not None}
            dims = ", ".join(f"{k}={_fmt(v, 2)}" for k, v in judged.items())
            if len(judged) < len(o.dimension_scores):
                dims += f" (+{len(o.dimension_scores) - len(judged)} unjudged)"
            rows.append(
                [
                    link,
                    o.table,
                    o.reward,
                    o.z,
                    o.messages,
                    o.tool_calls,
                    dims,
                    RawHtml(f"<code>{_e(o.lineage_command)}</code>"),
                ]
            )
        add(
            _table(
                ["row", "table", "reward", "z", "messages", "tool calls", "dimensions", "lineage"],
                rows,
            )
        )
        add("<h3>Lineage</h3>")
        for o in audit.outliers:
            add(f'<h4 id="{_anchor(o.row_id)}"><code>{_e(o.row_id)}</code></h4>')
            add(
                _table(
                    ["depth", "table", "row", "label", "job", "run"],
                    [
                        [
                            "· " * s.depth + str(s.depth),
                            s.table,
                            s.row_id,
                            s.label if s.found else "(not found)",
                            s.job,
                            s.run_id,
                        ]
                        for s in o.lineage
                    ],
                )
            )
    else:
        add(_empty("every reward equals its table's mean: no row stands out."))
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Reward audit: {_e(audit.snapshot)}</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


# -- files ------------------------------------------------------------------------------------


def _jsonable(audit: RewardAudit) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(audit)
    data["scored"] = len(audit.scored)
    if audit.groups is not None:
        data["groups"] |= {
            "wasted": audit.groups.wasted,
            "wasted_share": audit.groups.wasted_share,
            "all_zero_share": audit.groups.all_zero_share,
            "all_one_share": audit.groups.all_one_share,
        }
    for signal, out in zip(audit.spam, data["spam"], strict=True):
        out["flagged"] = signal.flagged
        for point, row in zip(signal.points, out["points"], strict=True):
            row["calls_per_solved"] = point.calls_per_solved
    for test, out in zip(audit.drift, data["drift"], strict=True):
        out["drifted"] = test.drifted
    return data


def build_plots(audit: RewardAudit) -> dict[str, Plot]:
    plots = [
        plot_histograms(audit),
        plot_judge_status(audit),
        plot_reward_vs_length(audit),
        plot_reward_vs_calls(audit),
    ]
    if audit.environments:
        plots.append(plot_environments(audit))
    if audit.groups is not None:
        plots.append(plot_groups(audit))
    if any(len(s.points) >= 2 for s in audit.spam):
        plots.append(plot_spam(audit))
    if any(d.statistic is not None for d in audit.drift):
        plots.append(plot_drift(audit))
    return {p.name: p for p in plots}


def write_report(audit: RewardAudit, out: Path) -> ReportFiles:
    """Write ``report.html`` (plots embedded), one PNG per plot and ``report.json`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    plots = build_plots(audit)
    pngs = []
    for plot in plots.values():
        path = out / f"{plot.name}.png"
        path.write_bytes(plot.png)
        pngs.append(path)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    page = out / "report.html"
    page.write_text(render_html(audit, plots, generated), encoding="utf-8")
    numbers = {**_jsonable(audit), "plots": [p.name for p in plots.values()]}
    data = out / "report.json"
    data.write_text(json.dumps(numbers, indent=2, default=str) + "\n", encoding="utf-8")
    return ReportFiles(page, data, tuple(pngs))
