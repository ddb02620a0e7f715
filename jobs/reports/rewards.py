"""The reward audit: what the rewards of one pinned snapshot look like, and where they drift.

:func:`audit_rewards` reads only the tables a snapshot pins (``rewards``, ``trajectories``,
and where pinned ``tasks``, ``chains``, ``rollouts``, ``environments``) and computes:

- per reward dimension, a histogram of the scores that were judged (``status = ok``) and the
  counts of ``missing`` and ``failed`` judgments. A failed or missing judgment has no score
  and is never counted as a pass: it is in no histogram and no mean;
- per trajectory, its reward (the mean of its judged dimensions) against its length
  (characters of message text and call arguments) and its tool-call count, with Pearson
  correlations;
- per RL environment, the mean and variance of its rollouts' rewards;
- for RL rollouts, the share of groups whose rewards are all zero or all one: GRPO learns
  nothing from a group without variance (wasted groups);
- tool-spam signals: the mean reward and the tool calls per solved sub-task, over the policy
  steps of the rollouts and, with a second snapshot, between the two snapshots'
  trajectories; rewards rising while calls per solved sub-task rise is flagged;
- with a second snapshot, per dimension a two-sample Kolmogorov–Smirnov test of the scores;
- the rows furthest from the mean reward (z-scores), with their lineage up to the tools.

Everything is plain data (frozen dataclasses); :mod:`jobs.reports.render` draws it.
"""

from __future__ import annotations

import math
import re
import statistics
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from jobs.reports import ReportError
from lake import Lake
from lake.lineage import LineageNode, lineage
from schemas.rewards import JudgeStatus

BINS = 10
#: A rollout reward within this of 0 or 1 counts as exactly 0 or 1 (F1 has an epsilon).
WASTE_TOLERANCE = 1e-6
DRIFT_ALPHA = 0.05
OUTLIERS = 10
POLICY_STEP = re.compile(r"@step(\d+)$")
_TEXT = pl.element().struct.field("content").str.len_chars().fill_null(0)
_ARGUMENTS = (
    pl.element()
    .struct.field("tool_calls")
    .list.eval(pl.element().struct.field("arguments").str.len_chars())
    .list.sum()
    .fill_null(0)
)
#: A trajectory's length: characters of its messages' text plus its tool calls' arguments.
LENGTH = (
    pl.col("messages").list.eval(_TEXT).list.sum()
    + pl.col("messages").list.eval(_ARGUMENTS).list.sum()
)


# -- statistics -------------------------------------------------------------------------------


def histogram(scores: Sequence[float], bins: int = BINS) -> list[int]:
    """Counts of ``scores`` in ``bins`` equal bins over [0, 1]; a bin holds its lower edge and
    the last one also 1.0.

    >>> histogram([0.0, 0.3, 0.5, 0.5, 1.0], bins=10)
    [1, 0, 0, 1, 0, 2, 0, 0, 0, 1]
    >>> histogram([0.25, 0.75, 1.0], bins=2)
    [1, 2]
    """
    counts = [0] * bins
    for score in scores:
        # The nudge keeps 0.3 in [0.3, 0.4) although 0.3 * 10 is 2.9999... in some orders.
        counts[min(max(math.floor(score * bins + 1e-9), 0), bins - 1)] += 1
    return counts


def kolmogorov_q(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution: the asymptotic KS p-value.

    >>> round(kolmogorov_q(1.358), 3)  # the 5% critical value
    0.05
    >>> round(kolmogorov_q(1.628), 3)  # the 1% critical value
    0.01
    >>> kolmogorov_q(0.0)
    1.0
    """
    if lam < 0.2:  # the series converges slowly here, and Q(0.2) = 1 to 10 digits
        return 1.0
    total = 0.0
    for j in range(1, 101):
        term = 2.0 * (-1) ** (j - 1) * math.exp(-2.0 * j * j * lam * lam)
        total += term
        if abs(term) < 1e-16:
            break
    return min(max(total, 0.0), 1.0)


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """The two-sample Kolmogorov–Smirnov statistic D and its asymptotic p-value
    (Stephens' small-sample correction of lambda). With ties (discrete scores) the p-value is
    conservative.

    >>> ks_2samp([0.0] * 10 + [1.0] * 10, [1.0] * 20)[0]
    0.5
    >>> ks_2samp([0.5, 1.0], [1.0, 0.5])
    (0.0, 1.0)
    """
    if not a or not b:
        raise ValueError("both samples need at least one value")
    sa, sb = sorted(a), sorted(b)
    n, m = len(sa), len(sb)
    d = 0.0
    for value in sorted(set(sa) | set(sb)):
        d = max(d, abs(bisect_right(sa, value) / n - bisect_right(sb, value) / m))
    effective = math.sqrt(n * m / (n + m))
    return d, kolmogorov_q((effective + 0.12 + 0.11 / effective) * d)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r, or None when either side is constant or there are fewer than 3 points.

    >>> pearson([1, 2, 3], [2, 4, 6])
    1.0
    >>> pearson([1, 1, 1], [1, 2, 3]) is None
    True
    """
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return round(statistics.correlation([float(x) for x in xs], [float(y) for y in ys]), 6)


def ecdf(values: Sequence[float]) -> tuple[tuple[float, float], ...]:
    """The empirical CDF at each distinct value (rounded to 6 digits).

    >>> ecdf([1.0, 0.5, 1.0, 0.0])
    ((0.0, 0.25), (0.5, 0.5), (1.0, 1.0))
    """
    counts = Counter(round(v, 6) for v in values)
    out, seen = [], 0
    for value in sorted(counts):
        seen += counts[value]
        out.append((value, seen / len(values)))
    return tuple(out)


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


# -- report data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DimensionStats:
    """One reward dimension: the histogram of its judged scores and its judge outcomes."""

    dimension: str
    judge_models: tuple[str, ...]
    ok: int
    missing: int
    failed: int
    mean: float | None
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.ok + self.missing + self.failed


@dataclass(frozen=True)
class ScoredRow:
    """A trajectory or rollout with its reward, length (characters of text and arguments),
    messages and tool calls."""

    table: str
    row_id: str
    reward: float
    chars: int
    messages: int
    tool_calls: int


@dataclass(frozen=True)
class EnvironmentStats:
    environment_id: str
    domain: str
    rollouts: int
    mean: float
    variance: float


@dataclass(frozen=True)
class GroupStats:
    """RL groups by what their rewards give GRPO: nothing (all 0 or all 1) or a signal."""

    groups: int
    all_zero: int
    all_one: int
    with_signal: int
    incomplete: int

    @property
    def wasted(self) -> int:
        return self.all_zero + self.all_one

    @property
    def wasted_share(self) -> float | None:
        return self.wasted / self.groups if self.groups else None

    @property
    def all_zero_share(self) -> float | None:
        return self.all_zero / self.groups if self.groups else None

    @property
    def all_one_share(self) -> float | None:
        return self.all_one / self.groups if self.groups else None


@dataclass(frozen=True)
class SpamPoint:
    label: str
    rows: int
    mean_reward: float | None
    calls: int
    solved: int

    @property
    def calls_per_solved(self) -> float | None:
        return self.calls / self.solved if self.solved else None


@dataclass(frozen=True)
class SpamSignal:
    """Mean reward and calls per solved sub-task along a series (policy steps, or snapshots).
    ``flagged`` when both are higher at the end of the series than at its start."""

    source: str
    points: tuple[SpamPoint, ...]

    @property
    def flagged(self) -> bool | None:
        if len(self.points) < 2:
            return None
        first, last = self.points[0], self.points[-1]
        if None in (
            first.mean_reward,
            last.mean_reward,
            first.calls_per_solved,
            last.calls_per_solved,
        ):
            return None
        return bool(
            last.mean_reward > first.mean_reward  # type: ignore[operator]
            and last.calls_per_solved > first.calls_per_solved  # type: ignore[operator]
        )


@dataclass(frozen=True)
class DriftTest:
    """Scores of one dimension in the snapshot (a) against the ``--vs`` snapshot (b)."""

    dimension: str
    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    statistic: float | None
    p_value: float | None
    unjudged_share_a: float | None
    unjudged_share_b: float | None
    #: The empirical CDFs: (score, share of scores <= it) at each distinct score.
    cdf_a: tuple[tuple[float, float], ...] = ()
    cdf_b: tuple[tuple[float, float], ...] = ()

    @property
    def drifted(self) -> bool | None:
        return None if self.p_value is None else self.p_value < DRIFT_ALPHA


@dataclass(frozen=True)
class LineageStep:
    depth: int
    table: str | None
    row_id: str
    label: str
    job: str | None
    run_id: str | None
    found: bool


@dataclass(frozen=True)
class Outlier:
    table: str
    row_id: str
    reward: float
    z: float
    messages: int
    tool_calls: int
    dimension_scores: dict[str, float | None]
    lineage_command: str
    lineage: tuple[LineageStep, ...]


@dataclass(frozen=True)
class RewardAudit:
    lake: str
    snapshot: str
    vs: str | None
    dimensions: tuple[DimensionStats, ...]
    vs_dimensions: tuple[DimensionStats, ...]
    bins: int
    scored: tuple[ScoredRow, ...]
    unscored_trajectories: int
    correlation_length: float | None
    correlation_calls: float | None
    environments: tuple[EnvironmentStats, ...]
    groups: GroupStats | None
    spam: tuple[SpamSignal, ...]
    drift: tuple[DriftTest, ...]
    outliers: tuple[Outlier, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def has_rollouts(self) -> bool:
        return self.groups is not None


# -- reading the snapshot ---------------------------------------------------------------------


class _Pinned:
    """The tables of one snapshot, read once each."""

    def __init__(self, lake: Lake, snapshot: str) -> None:
        self.lake = lake
        self.name = snapshot
        self.record = lake.snapshot(snapshot)  # raises a clear error for an unknown name

    def has(self, table: str) -> bool:
        return self.record.version_of(table) is not None

    def frame(self, table: str, columns: list[str]) -> pl.DataFrame | None:
        if not self.has(table):
            return None
        arrow = self.lake.read(table, snapshot=self.name).to_arrow(columns=columns)
        return pl.from_arrow(arrow)  # type: ignore[return-value]


def _rewards(pinned: _Pinned) -> pl.DataFrame:
    frame = pinned.frame(
        "rewards",
        ["id", "target_table", "target_id", "dimension", "score", "status", "judge_model"],
    )
    if frame is None:
        raise ReportError(
            f"snapshot {pinned.name!r} pins no rewards table; run `astra pipeline trajectories` "
            "and pin a new snapshot (`astra lake snapshot create NAME`)"
        )
    return frame


def dimension_stats(rewards: pl.DataFrame, bins: int = BINS) -> tuple[DimensionStats, ...]:
    """Per dimension: judged-score histogram and ok/missing/failed counts."""
    out = []
    for dimension in sorted(set(rewards["dimension"].to_list())):
        rows = rewards.filter(pl.col("dimension") == dimension)
        status = rows["status"].to_list()
        scores = rows.filter(pl.col("status") == JudgeStatus.OK.value)["score"].to_list()
        out.append(
            DimensionStats(
                dimension=dimension,
                judge_models=tuple(sorted(set(rows["judge_model"].to_list()))),
                ok=status.count(JudgeStatus.OK.value),
                missing=status.count(JudgeStatus.MISSING.value),
                failed=status.count(JudgeStatus.FAILED.value),
                mean=_mean(scores),
                counts=tuple(histogram(scores, bins)),
            )
        )
    return tuple(out)


def _judged_scores(rewards: pl.DataFrame, dimension: str) -> list[float]:
    ok = pl.col("status") == JudgeStatus.OK.value
    return rewards.filter((pl.col("dimension") == dimension) & ok)["score"].to_list()


def _trajectory_rewards(rewards: pl.DataFrame) -> dict[str, float]:
    """Each trajectory's reward: the mean of its judged (ok) dimensions."""
    ok = rewards.filter(
        (pl.col("target_table") == "trajectories") & (pl.col("status") == JudgeStatus.OK.value)
    )
    means = ok.group_by("target_id").agg(pl.col("score").mean())
    return dict(zip(means["target_id"].to_list(), means["score"].to_list(), strict=True))


def _trajectories(pinned: _Pinned) -> pl.DataFrame:
    frame = pinned.frame("trajectories", ["id", "task_id", "messages", "n_tool_calls"])
    if frame is None:
        raise ReportError(
            f"snapshot {pinned.name!r} pins no trajectories table; run `astra pipeline "
            "trajectories` and pin a new snapshot (`astra lake snapshot create NAME`)"
        )
    return frame.with_columns(
        pl.col("messages").list.len().alias("n_messages"), LENGTH.alias("chars")
    ).drop("messages")


def _scored_trajectories(
    trajectories: pl.DataFrame, rewards: dict[str, float]
) -> tuple[list[ScoredRow], int]:
    scored, unscored = [], 0
    for row in trajectories.sort("id").iter_rows(named=True):
        reward = rewards.get(row["id"])
        if reward is None:
            unscored += 1
            continue
        scored.append(
            ScoredRow(
                "trajectories",
                row["id"],
                reward,
                row["chars"],
                row["n_messages"],
                row["n_tool_calls"],
            )
        )
    return scored, unscored


def _rollouts(pinned: _Pinned) -> pl.DataFrame | None:
    frame = pinned.frame(
        "rollouts",
        [
            "id",
            "environment_id",
            "group_id",
            "policy_checkpoint",
            "messages",
            "tool_results",
            "reward",
            "reward_parts",
        ],
    )
    if frame is None or frame.height == 0:
        return None
    recall = pl.col("reward_parts").list.eval(
        pl.element().filter(pl.element().struct.field("name") == "recall").struct.field("value")
    )
    return frame.with_columns(
        pl.col("messages").list.len().alias("n_messages"),
        LENGTH.alias("chars"),
        pl.col("tool_results").list.len().alias("n_calls"),
        recall.list.first().alias("recall"),
    ).drop("messages", "tool_results")


def _environments(pinned: _Pinned) -> dict[str, tuple[str, int]]:
    """Environment id -> (domain, number of sub-tasks)."""
    frame = pinned.frame("environments", ["id", "domain", "expected"])
    if frame is None:
        return {}
    frame = frame.with_columns(pl.col("expected").list.len().alias("subtasks"))
    return {r["id"]: (r["domain"], r["subtasks"]) for r in frame.iter_rows(named=True)}


def environment_stats(
    rollouts: pl.DataFrame, envs: dict[str, tuple[str, int]]
) -> tuple[EnvironmentStats, ...]:
    """Per environment: rollouts with a reward, their mean and population variance."""
    out = []
    rewarded = rollouts.filter(pl.col("reward").is_not_null())
    for env_id in sorted(set(rewarded["environment_id"].to_list())):
        values = rewarded.filter(pl.col("environment_id") == env_id)["reward"].to_list()
        out.append(
            EnvironmentStats(
                environment_id=env_id,
                domain=envs.get(env_id, ("?", 0))[0],
                rollouts=len(values),
                mean=statistics.fmean(values),
                variance=statistics.pvariance(values),
            )
        )
    return tuple(out)


def group_stats(rollouts: pl.DataFrame, tolerance: float = WASTE_TOLERANCE) -> GroupStats:
    """Count groups whose rewards are all 0 or all 1 (no GRPO signal), or incomplete (a
    rollout without a reward)."""
    all_zero = all_one = signal = incomplete = 0
    groups = rollouts.group_by("group_id").agg(pl.col("reward"))
    for rewards in groups["reward"].to_list():
        if any(r is None for r in rewards):
            incomplete += 1
        elif all(r <= tolerance for r in rewards):
            all_zero += 1
        elif all(r >= 1.0 - tolerance for r in rewards):
            all_one += 1
        else:
            signal += 1
    return GroupStats(groups.height, all_zero, all_one, signal, incomplete)


def _policy_order(label: str) -> tuple[int, str]:
    match = POLICY_STEP.search(label)
    return (int(match.group(1)) if match else -1, label)


def rollout_spam(rollouts: pl.DataFrame, envs: dict[str, tuple[str, int]]) -> SpamSignal:
    """Mean reward and calls per solved sub-task for each policy step of the rollouts. A
    rollout's solved sub-tasks are its recall times its environment's sub-tasks."""
    points = []
    for label in sorted(set(rollouts["policy_checkpoint"].to_list()), key=_policy_order):
        rows = rollouts.filter(pl.col("policy_checkpoint") == label)
        solved = sum(
            round((r["recall"] or 0.0) * envs.get(r["environment_id"], ("", 0))[1])
            for r in rows.iter_rows(named=True)
        )
        rewards = [r for r in rows["reward"].to_list() if r is not None]
        points.append(
            SpamPoint(label, rows.height, _mean(rewards), int(rows["n_calls"].sum()), solved)
        )
    return SpamSignal("rollouts, by policy step", tuple(points))


def _trajectory_spam_point(pinned: _Pinned, rewards: pl.DataFrame) -> SpamPoint | None:
    """Trajectories of one snapshot: a chain step is a sub-task, solved as far as the
    chain_coverage rule found it called in order."""
    tasks = pinned.frame("tasks", ["id", "chain_id"])
    chains = pinned.frame("chains", ["id", "length"])
    if tasks is None or chains is None:
        return None
    coverage = rewards.filter(
        (pl.col("dimension") == "chain_coverage") & (pl.col("status") == JudgeStatus.OK.value)
    ).select(pl.col("target_id").alias("id"), pl.col("score").alias("coverage"))
    joined = (
        _trajectories(pinned)
        .join(coverage, on="id")
        .join(tasks.rename({"id": "task_id"}), on="task_id")
        .join(chains.rename({"id": "chain_id"}), on="chain_id")
    )
    if joined.height == 0:
        return None
    per_trajectory = _trajectory_rewards(rewards)
    solved = sum(round(c * n) for c, n in zip(joined["coverage"], joined["length"], strict=True))
    reward = _mean([per_trajectory[i] for i in joined["id"].to_list() if i in per_trajectory])
    return SpamPoint(pinned.name, joined.height, reward, int(joined["n_tool_calls"].sum()), solved)


def drift_tests(
    a: pl.DataFrame,
    b: pl.DataFrame,
    rollouts_a: pl.DataFrame | None,
    rollouts_b: pl.DataFrame | None,
) -> tuple[DriftTest, ...]:
    """Per dimension (and the rollouts' reward), a KS test of snapshot a's scores against b's."""

    def unjudged(frame: pl.DataFrame, dimension: str) -> float | None:
        rows = frame.filter(pl.col("dimension") == dimension)
        return (rows.filter(pl.col("status") != "ok").height / rows.height) if rows.height else None

    samples = []
    for dimension in sorted(set(a["dimension"].to_list()) | set(b["dimension"].to_list())):
        samples.append(
            (
                dimension,
                _judged_scores(a, dimension),
                _judged_scores(b, dimension),
                unjudged(a, dimension),
                unjudged(b, dimension),
            )
        )
    if rollouts_a is not None and rollouts_b is not None:
        ra = [r for r in rollouts_a["reward"].to_list() if r is not None]
        rb = [r for r in rollouts_b["reward"].to_list() if r is not None]
        samples.append(("rollouts.reward", ra, rb, None, None))
    out = []
    for dimension, sa, sb, ua, ub in samples:
        statistic = p_value = None
        if sa and sb:
            statistic, p_value = ks_2samp(sa, sb)
        out.append(
            DriftTest(
                dimension,
                len(sa),
                len(sb),
                _mean(sa),
                _mean(sb),
                statistic,
                p_value,
                ua,
                ub,
                ecdf(sa),
                ecdf(sb),
            )
        )
    return tuple(out)


def _flatten(node: LineageNode, depth: int = 0) -> list[LineageStep]:
    steps = [
        LineageStep(depth, node.table, node.row_id, node.label, node.job, node.run_id, node.found)
    ]
    for parent in node.parents:
        steps.extend(_flatten(parent, depth + 1))
    return steps


def outliers(
    lake: Lake,
    snapshot: str,
    scored: Sequence[ScoredRow],
    rewards: pl.DataFrame,
    limit: int = OUTLIERS,
    rollout_parts: dict[str, dict[str, float | None]] | None = None,
) -> tuple[Outlier, ...]:
    """The ``limit`` rows furthest from their table's mean reward (by |z|), with lineage.
    A trajectory lists its reward dimensions; a rollout its reward parts."""
    ranked: list[tuple[float, ScoredRow]] = []
    for table in sorted({r.table for r in scored}):
        rows = [r for r in scored if r.table == table]
        values = [r.reward for r in rows]
        spread = statistics.pstdev(values) if len(values) > 1 else 0.0
        if spread == 0.0:
            continue
        centre = statistics.fmean(values)
        ranked.extend(((r.reward - centre) / spread, r) for r in rows)
    ranked.sort(key=lambda pair: (-abs(pair[0]), pair[1].row_id))
    out = []
    for z, row in ranked[:limit]:
        dims = rewards.filter(pl.col("target_id") == row.row_id).sort("dimension")
        scores = dict(zip(dims["dimension"].to_list(), dims["score"].to_list(), strict=True))
        if row.table == "rollouts":
            scores = (rollout_parts or {}).get(row.row_id, {})
        command = f"astra lake lineage {row.row_id} --lake {lake.uri} --snapshot {snapshot}"
        chain = tuple(_flatten(lineage(lake, row.row_id, snapshot=snapshot)))
        out.append(
            Outlier(
                row.table,
                row.row_id,
                row.reward,
                round(z, 4),
                row.messages,
                row.tool_calls,
                scores,
                command,
                chain,
            )
        )
    return tuple(out)


def audit_rewards(
    lake: Lake, snapshot: str, vs: str | None = None, outlier_limit: int = OUTLIERS
) -> RewardAudit:
    """The reward audit of ``snapshot`` (optionally against ``vs``), from pinned tables only."""
    pinned = _Pinned(lake, snapshot)
    other = _Pinned(lake, vs) if vs else None
    rewards = _rewards(pinned)
    trajectories = _trajectories(pinned)
    scored, unscored = _scored_trajectories(trajectories, _trajectory_rewards(rewards))
    notes = []
    rollouts = _rollouts(pinned)
    envs = _environments(pinned)
    environments: tuple[EnvironmentStats, ...] = ()
    groups = None
    spam = []
    parts: dict[str, dict[str, float | None]] = {}
    if rollouts is not None:
        parts = {
            r["id"]: {p["name"]: p["value"] for p in r["reward_parts"] or []}
            for r in rollouts.select("id", "reward_parts").iter_rows(named=True)
        }
        environments = environment_stats(rollouts, envs)
        groups = group_stats(rollouts)
        spam.append(rollout_spam(rollouts, envs))
        scored.extend(
            ScoredRow("rollouts", r["id"], r["reward"], r["chars"], r["n_messages"], r["n_calls"])
            for r in rollouts.sort("id").iter_rows(named=True)
            if r["reward"] is not None
        )
        if not envs:
            notes.append(f"snapshot {snapshot!r} pins no environments: sub-tasks unknown")
    drift: tuple[DriftTest, ...] = ()
    vs_dimensions: tuple[DimensionStats, ...] = ()
    if other is not None:
        other_rewards = _rewards(other)
        vs_dimensions = dimension_stats(other_rewards)
        drift = drift_tests(rewards, other_rewards, rollouts, _rollouts(other))
        points = [
            _trajectory_spam_point(other, other_rewards),
            _trajectory_spam_point(pinned, rewards),
        ]
        if all(p is not None for p in points):
            spam.append(SpamSignal("trajectories, between snapshots", tuple(points)))  # type: ignore[arg-type]
    trajectory_rows = [r for r in scored if r.table == "trajectories"]
    return RewardAudit(
        lake=lake.uri,
        snapshot=snapshot,
        vs=vs,
        dimensions=dimension_stats(rewards),
        vs_dimensions=vs_dimensions,
        bins=BINS,
        scored=tuple(scored),
        unscored_trajectories=unscored,
        correlation_length=pearson(
            [r.chars for r in trajectory_rows], [r.reward for r in trajectory_rows]
        ),
        correlation_calls=pearson(
            [r.tool_calls for r in trajectory_rows], [r.reward for r in trajectory_rows]
        ),
        environments=environments,
        groups=groups,
        spam=tuple(spam),
        drift=drift,
        outliers=outliers(lake, snapshot, scored, rewards, outlier_limit, parts),
        notes=tuple(notes),
    )
