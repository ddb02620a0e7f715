"""The reward audit on a tiny lake with planted rewards whose statistics are known.

Two snapshots of one lake: ``base`` (every trajectory's tool_call_success is 1.0) and
``next`` (the same rows re-judged: five 0.0, three 0.5, two 1.0; plus failed and missing LLM
judgments, and eight RL rollouts in four groups). Known answers: the histogram counts, the
missing/failed counts, the wasted group share (all-zero 1/4, all-one 1/4), the KS statistic
D = 0.8 with p = Q(1.924) ~ 0.0012 (Kolmogorov distribution), and D = 0 with p = 1 for a
dimension that did not change.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astra.cli import app
from jobs.reports import ReportError
from jobs.reports.render import write_report
from jobs.reports.rewards import RewardAudit, audit_rewards, ks_2samp
from lake import Lake
from schemas import (
    Chain,
    Environment,
    ExpectedAnswer,
    Message,
    Reward,
    Rollout,
    Task,
    Tool,
    ToolCall,
    ToolServer,
    Trajectory,
    Verdict,
)
from schemas.rollouts import RewardPart, ToolResult

NEXT_SUCCESS = [0.0] * 5 + [0.5] * 3 + [1.0] * 2
# (group, step, environment index, reward, recall, tool calls) for the eight rollouts.
ROLLOUTS = [
    ("g1", 0, 0, 0.0, 0.0, 1),
    ("g1", 0, 0, 0.0, 0.0, 1),
    ("g2", 0, 1, 0.9999998, 1.0, 3),  # F1's epsilon: counts as exactly one
    ("g2", 0, 1, 0.9999998, 1.0, 3),
    ("g3", 1, 0, 0.5, 0.5, 4),
    ("g3", 1, 0, 1.0, 1.0, 6),
    ("g4", 1, 1, 0.75, 2 / 3, 8),
    ("g4", 1, 1, 1.0, 1.0, 6),
]


def _trajectory(task: Task, tools: list[Tool], calls: int, seed: int) -> Trajectory:
    messages = [Message(role="user", content=task.query)]
    for i in range(calls):
        tool = tools[i % len(tools)]
        messages.append(
            Message(
                role="assistant",
                tool_calls=[ToolCall(id=f"c{i}", name=tool.name, arguments="{}")],
            )
        )
        messages.append(Message(role="tool", tool_call_id=f"c{i}", name=tool.name, content="{}"))
    messages.append(Message(role="assistant", content="done"))
    return Trajectory(
        task_id=task.id,
        tool_ids=[t.id for t in tools],
        messages=messages,
        agent_model="planted",
        executor="offline_simulator",
        seed=seed,
        n_turns=calls + 1,
        n_tool_calls=calls,
        status="completed",
        final_answer="done",
        parent_ids=[task.id],
    )


def _reward(target: str, dimension: str, score: float | None, status: str, judge: str) -> Reward:
    return Reward(
        target_table="trajectories",
        target_id=target,
        dimension=dimension,
        score=score,
        status=status,
        judge_model=judge,
        prompt_version="1",
        parent_ids=[target],
    )


def _rollout(
    env: Environment, group: str, index: int, step: int, reward: float, recall: float, calls: int
) -> Rollout:
    results = [
        ToolResult(call_id=f"c{i}", name="lookup", ok=True, result_digest=f"sha256:{i}")
        for i in range(calls)
    ]
    return Rollout(
        environment_id=env.id,
        group_id=group,
        sample_index=index,
        policy_checkpoint=f"planted@step{step}",
        snapshot="base",
        messages=[Message(role="user", content=env.prompt)],
        token_ids=[1, 2],
        loss_mask=[0, 1],
        tool_results=results,
        reward=reward,
        reward_parts=[RewardPart(name="recall", value=recall)],
        runtime_digest="sha256:planted",
        parent_ids=[env.id],
    )


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, dict]:
    lake = Lake(tmp_path_factory.mktemp("report") / "lake")
    server = ToolServer(
        source="planted",
        name="flights",
        title="Flights",
        description="Flight search.",
        domain="travel",
        tool_count=2,
    )
    tools = [
        Tool(
            server_id=server.id,
            name=name,
            description=f"{name} a flight",
            domain="travel",
            source_format="openai",
            parameters={"type": "object", "properties": {}},
            parent_ids=[server.id],
        )
        for name in ("search_flights", "book_flight")
    ]
    chain = Chain(
        server_id=server.id,
        tool_ids=[t.id for t in tools],
        tool_names=[t.name for t in tools],
        length=2,
        seed=0,
        verdicts=[Verdict(verifier="satisfiability", passed=True)],
        parent_ids=[t.id for t in tools],
    )
    task = Task(
        server_id=server.id, chain_id=chain.id, query="Fly me to Rome.", parent_ids=[chain.id]
    )
    trajectories = [_trajectory(task, tools, calls=1 + i % 3, seed=i) for i in range(10)]
    lake.append("tool_servers", ToolServer.to_arrow([server]))
    lake.append("tools", Tool.to_arrow(tools))
    lake.append("chains", Chain.to_arrow([chain]))
    lake.append("tasks", Task.to_arrow([task]))
    lake.append("trajectories", Trajectory.to_arrow(trajectories))
    ids = [t.id for t in trajectories]
    base = [_reward(i, "tool_call_success", 1.0, "ok", "rule") for i in ids]
    base += [_reward(i, "schema_valid_calls", 1.0, "ok", "rule") for i in ids]
    base += [_reward(i, "chain_coverage", 1.0, "ok", "rule") for i in ids]
    lake.append("rewards", Reward.to_arrow(base))
    lake.create_snapshot("base")

    # Re-judged: the same reward ids get new scores (an upsert), plus the LLM judge's rows.
    rejudged = [
        _reward(i, "tool_call_success", s, "ok", "rule")
        for i, s in zip(ids, NEXT_SUCCESS, strict=True)
    ]
    rejudged += [_reward(i, "chain_coverage", 0.5, "ok", "rule") for i in ids]
    rejudged += [_reward(i, "planning", None, "failed", "llm") for i in ids[:7]]
    rejudged += [_reward(i, "planning", None, "missing", "llm") for i in ids[7:]]
    lake.upsert("rewards", Reward.to_arrow(rejudged))
    envs = [
        Environment(
            domain="travel",
            prompt=f"Book trip {k}",
            tool_ids=[t.id for t in tools],
            initial_state={},
            parent_ids=[chain.id],
            expected=[
                ExpectedAnswer(sub_question_id=str(j), tool_name="lookup", answer=str(j))
                for j in range(n)
            ],
        )
        for k, n in enumerate((2, 3))
    ]
    lake.append("environments", Environment.to_arrow(envs))
    rollouts = []
    for n, (group, step, env, reward, recall, calls) in enumerate(ROLLOUTS):
        rollouts.append(_rollout(envs[env], group, n % 2, step, reward, recall, calls))
    lake.append("rollouts", Rollout.to_arrow(rollouts))
    lake.create_snapshot("next")
    return lake, {"trajectories": ids, "envs": [e.id for e in envs], "tools": tools}


@pytest.fixture(scope="module")
def audit(planted: tuple[Lake, dict]) -> RewardAudit:
    return audit_rewards(planted[0], "next", vs="base", outlier_limit=3)


def test_histograms_and_judge_counts(audit: RewardAudit) -> None:
    dims = {d.dimension: d for d in audit.dimensions}
    assert sorted(dims) == ["chain_coverage", "planning", "schema_valid_calls", "tool_call_success"]
    success = dims["tool_call_success"]
    assert success.counts == (5, 0, 0, 0, 0, 3, 0, 0, 0, 2)
    assert (success.ok, success.missing, success.failed) == (10, 0, 0)
    assert success.mean == pytest.approx(0.35)
    planning = dims["planning"]  # failures are never passes: no score, no histogram entry
    assert (planning.ok, planning.missing, planning.failed) == (0, 3, 7)
    assert planning.counts == (0,) * 10 and planning.mean is None
    base = {d.dimension: d for d in audit.vs_dimensions}
    assert base["tool_call_success"].counts == (0,) * 9 + (10,)


def test_trajectory_rewards_leave_out_unjudged_dimensions(audit: RewardAudit) -> None:
    rewards = sorted(r.reward for r in audit.scored if r.table == "trajectories")
    # mean of tool_call_success, schema_valid_calls (1.0) and chain_coverage (0.5)
    assert rewards[0] == pytest.approx(0.5) and rewards[-1] == pytest.approx(2.5 / 3)
    assert audit.unscored_trajectories == 0
    # length: the query (15 characters), "{}" arguments and "{}" results per call, "done"
    for row in audit.scored:
        if row.table == "trajectories":
            assert row.chars == 15 + 4 * row.tool_calls + 4
            assert row.messages == 2 * row.tool_calls + 2


def test_wasted_groups_and_environments(audit: RewardAudit, planted: tuple[Lake, dict]) -> None:
    groups = audit.groups
    assert groups is not None
    assert (groups.groups, groups.all_zero, groups.all_one, groups.with_signal) == (4, 1, 1, 2)
    assert groups.wasted_share == 0.5
    assert groups.all_zero_share == 0.25 and groups.all_one_share == 0.25
    envs = {e.environment_id: e for e in audit.environments}
    first, second = planted[1]["envs"]
    assert envs[first].rollouts == 4 and envs[first].mean == pytest.approx(0.375)
    assert envs[first].variance == pytest.approx(0.171875)  # values 0, 0, 0.5, 1
    assert envs[second].mean == pytest.approx((0.9999998 * 2 + 1.75) / 4)


def test_tool_spam_is_flagged_when_reward_and_calls_per_solved_rise(audit: RewardAudit) -> None:
    rollouts = next(s for s in audit.spam if s.source.startswith("rollouts"))
    step0, step1 = rollouts.points
    # step 0: 8 calls, solved 0 + 0 + 3 + 3; step 1: 24 calls, solved 1 + 2 + 2 + 3
    assert (step0.calls, step0.solved, step1.calls, step1.solved) == (8, 6, 24, 8)
    assert step0.mean_reward == pytest.approx(0.4999999)
    assert step1.mean_reward == pytest.approx(0.8125)
    assert rollouts.flagged is True
    snapshots = next(s for s in audit.spam if s.source.startswith("trajectories"))
    assert [p.label for p in snapshots.points] == ["base", "next"]
    # base: coverage 1.0 of 2 steps -> 20 solved; next: 0.5 -> 10 solved; 19 calls each
    assert [p.solved for p in snapshots.points] == [20, 10]
    assert snapshots.flagged is False  # calls per solved rose, but the reward fell


def test_drift_between_snapshots(audit: RewardAudit) -> None:
    drift = {d.dimension: d for d in audit.drift}
    success = drift["tool_call_success"]
    assert success.statistic == pytest.approx(0.8)
    # lambda = (sqrt(5) + 0.12 + 0.11 / sqrt(5)) * 0.8 = 1.9245; Q = 2 exp(-2 lambda^2) - ...
    assert success.p_value == pytest.approx(0.001218, abs=2e-5)
    assert success.drifted is True
    assert drift["chain_coverage"].statistic == 1.0  # every 1.0 became 0.5
    unchanged = drift["schema_valid_calls"]
    assert (unchanged.statistic, unchanged.p_value, unchanged.drifted) == (0.0, 1.0, False)
    assert drift["planning"].statistic is None  # no judged scores on either side
    assert drift["planning"].unjudged_share_a == 1.0
    assert "rollouts.reward" not in drift  # base has no rollouts


def test_ks_matches_hand_computed_statistic() -> None:
    statistic, p_value = ks_2samp([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    assert statistic == 1.0
    # lambda = sqrt(1.5) + 0.12 + 0.11 / sqrt(1.5) = 1.4345; Q ~ 2 exp(-2 lambda^2) = 0.0326
    assert p_value == pytest.approx(0.0326, abs=1e-3)


def test_outliers_carry_lineage_to_the_tools(
    audit: RewardAudit, planted: tuple[Lake, dict]
) -> None:
    lake, _ = planted
    assert len(audit.outliers) == 3
    top = audit.outliers[0]
    # z within each table: the two best trajectories (0.833 against a mean of 0.617, z 1.66)
    # lie further out than a zero-reward rollout (z -1.59)
    assert [o.table for o in audit.outliers] == ["trajectories", "trajectories", "rollouts"]
    assert top.z == pytest.approx(1.664, abs=1e-3) and top.reward == pytest.approx(2.5 / 3)
    assert audit.outliers[2].reward == 0.0
    assert (
        top.lineage_command == f"astra lake lineage {top.row_id} --lake {lake.uri} --snapshot next"
    )
    for outlier in audit.outliers:
        tables = {step.table for step in outlier.lineage if step.found}
        assert {"tools", "tool_servers"} <= tables
        assert outlier.lineage[0].row_id == outlier.row_id


def test_empty_sections_say_so(planted: tuple[Lake, dict], tmp_path: Path) -> None:
    lake, _ = planted
    audit = audit_rewards(lake, "base")
    assert audit.groups is None and audit.environments == () and audit.drift == ()
    assert audit.outliers == ()  # every base reward is 1.0: no spread
    files = write_report(audit, tmp_path / "base")
    page = files.html.read_text()
    assert "has no rollouts" in page and "no --vs snapshot given" in page
    assert "no row stands out" in page
    assert json.loads(files.json.read_text())["plots"] == [
        "histograms",
        "judge_status",
        "reward_vs_length",
        "reward_vs_calls",
    ]


def test_a_snapshot_without_rewards_is_a_clear_error(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    server = ToolServer(source="s", name="n", title="t", description="d", domain="x", tool_count=0)
    lake.append("tool_servers", ToolServer.to_arrow([server]))
    lake.create_snapshot("bare")
    with pytest.raises(ReportError, match="pins no rewards table"):
        audit_rewards(lake, "bare")


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images[values.get("id") or ""] = values.get("src") or ""


def test_cli_writes_the_report_and_json(planted: tuple[Lake, dict], tmp_path: Path) -> None:
    lake, _ = planted
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "rewards",
            "--snapshot",
            "next",
            "--vs",
            "base",
            "--out",
            str(out),
            "--lake",
            lake.uri,
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["wasted_group_share"] == 0.5
    assert summary["drifted"] == ["chain_coverage", "tool_call_success"]
    assert (summary["missing"], summary["failed"]) == (3, 7)
    assert Path(summary["html"]) == out / "report.html"
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["groups"]["wasted_share"] == 0.5
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == sorted(numbers["plots"])
    assert len(pngs) == 8


def test_cli_unknown_snapshot_is_one_line_exit_2(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "astra", "report", "rewards", "--snapshot", "nope"]
    completed = subprocess.run(
        [*command, "--lake", str(tmp_path / "empty")], capture_output=True, text=True
    )
    assert completed.returncode == 2
    assert "no snapshot 'nope'" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make venv installs it)")
def test_report_renders_in_headless_chromium(audit: RewardAudit, tmp_path: Path) -> None:
    files = write_report(audit, tmp_path / "page")
    url = files.html.resolve().as_uri()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    parser = _Images()
    parser.feed(dom)
    plots = json.loads(files.json.read_text())["plots"]
    assert sorted(parser.images) == sorted(f"plot-{name}" for name in plots)
    for src in parser.images.values():
        assert src.startswith("data:image/png;base64,") and len(src) > 5_000
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1280,2400", url],
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    with Image.open(shot) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text and plots, not a blank page
    largest = max(count for count, _ in colors)
    assert largest < 0.95 * sum(count for count, _ in colors)
