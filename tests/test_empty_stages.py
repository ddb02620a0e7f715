"""No silent empty output: a job that writes no rows although its inputs had rows is reported
with a reason (its own, else one built from its inputs and drops), and pipelines stop there."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from jobs.base import Job, JobContext, NoParams
from jobs.dedup.jobs import Curate, Decontaminate, DedupExact, DedupNear, DedupSemantic
from jobs.ingest import IngestCatalog, IngestParams
from jobs.runner import EmptyOutputError, generic_reason, run_job, run_jobs
from jobs.trajectories import TRAJECTORY_STAGES
from lake import Lake
from schemas import Task, Tool, Trajectory
from tests.factories import derived_rows

SAMPLE_TOOLS = 31


@dataclass(frozen=True)
class ToyParams:
    keep: bool = False
    explanation: str | None = None


class ToyTasks(Job):
    """tools -> tasks: scores every tool 0 and keeps none (unless ``keep``)."""

    name: ClassVar[str] = "toy-tasks"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "a task per tool scoring above the bar (none do)"
    inputs: ClassVar[tuple[str, ...]] = ("tools",)
    outputs: ClassVar[tuple[str, ...]] = ("tasks", "llm_calls")
    Params: ClassVar[type] = ToyParams

    def run(self, ctx: JobContext) -> None:
        rows = ctx.read("tools").to_arrow().to_pylist()
        if self.params.explanation:
            ctx.explain_empty("tasks", self.params.explanation)
        kept: list[Task] = []
        if self.params.keep:
            _, task, _ = derived_rows([Tool.from_record(r) for r in rows[:2]])
            kept.append(task)
        ctx.dropped["task_below_threshold"] += len(rows) - len(kept)
        ctx.replace("tasks", Task.to_arrow(kept))


class ToyTrajectories(Job):
    """tasks -> trajectories: writes nothing (so only an empty input excuses it)."""

    name: ClassVar[str] = "toy-trajectories"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "never solves a task"
    inputs: ClassVar[tuple[str, ...]] = ("tasks",)
    outputs: ClassVar[tuple[str, ...]] = ("trajectories",)
    Params: ClassVar[type] = NoParams

    def run(self, ctx: JobContext) -> None:
        ctx.replace("trajectories", Trajectory.to_arrow([]))


def ingest(source: str = "builtin:sample") -> IngestCatalog:
    return IngestCatalog(IngestParams(source=source))


def test_empty_output_has_a_generic_reason_from_inputs_and_drops(lake: Lake) -> None:
    run_job(lake, ingest())
    result = run_job(lake, ToyTasks(ToyParams()))
    reason = f"its inputs had rows (tools: {SAMPLE_TOOLS}); dropped: task_below_threshold: 31"
    assert result.empty == {"tasks": reason}  # llm_calls is a side table: never required
    assert result.run.metrics["empty"] == {"tasks": reason}
    assert lake.get_run(result.run.run_id).finished.metrics["empty"] == {"tasks": reason}
    assert lake.read("tasks").count_rows() == 0  # the commit stands


def test_the_jobs_own_explanation_wins(lake: Lake) -> None:
    run_job(lake, ingest())
    result = run_job(lake, ToyTasks(ToyParams(explanation="every tool scored 0 of 5")))
    assert result.empty == {"tasks": "every tool scored 0 of 5"}


def test_an_explanation_is_ignored_when_rows_were_written(lake: Lake) -> None:
    run_job(lake, ingest())
    result = run_job(lake, ToyTasks(ToyParams(keep=True, explanation="would be empty")))
    assert result.kept == {"tasks": 1} and result.empty == {}
    assert "empty" not in result.run.metrics


def test_a_reused_run_is_not_flagged_again(lake: Lake) -> None:
    run_job(lake, ingest())
    first = run_job(lake, ToyTasks(ToyParams()))
    again = run_job(lake, ToyTasks(ToyParams()))
    assert first.empty and again.reused and again.empty == {}
    assert again.run.metrics["empty"] == first.empty  # what the run recorded stays readable


def test_an_empty_input_excuses_the_job(lake: Lake) -> None:
    run_job(lake, ingest())
    run_job(lake, ToyTasks(ToyParams()))
    result = run_job(lake, ToyTrajectories(NoParams()))
    assert result.kept == {"trajectories": 0} and result.empty == {}


def test_a_job_without_inputs_is_empty_when_its_source_gave_nothing(
    lake: Lake, tmp_path: Path
) -> None:
    catalog = tmp_path / "toolless.json"
    server = {"server_info": {"name": "units", "description": "Converts units of mass."}}
    catalog.write_text(json.dumps({"servers": [{**server, "tools": []}]}))
    result = run_job(lake, ingest(str(catalog)))
    assert result.kept.get("tools", 0) == 0
    assert result.empty["tools"].startswith("nothing in its source became a row")


def test_explain_empty_takes_declared_outputs_and_a_reason(lake: Lake) -> None:
    run_job(lake, ingest())

    class Explains(ToyTasks):
        name: ClassVar[str] = "toy-explains"

        def run(self, ctx: JobContext) -> None:
            ctx.explain_empty(self.params.explanation, "why")

    with pytest.raises(KeyError, match="did not declare 'chains' as an output"):
        run_job(lake, Explains(ToyParams(explanation="chains")))


def test_which_outputs_must_get_rows() -> None:
    """Side tables never; dedup's clusters and curate's tables may be empty; the rest must."""
    assert ToyTasks.required_outputs() == ("tasks",)
    assert IngestCatalog.required_outputs() == ("tool_servers", "tools")
    for stage in TRAJECTORY_STAGES:
        assert stage.required_outputs() == tuple(t for t in stage.outputs if t != "llm_calls")
    for job in (DedupExact, DedupNear, DedupSemantic, Decontaminate, Curate):
        assert job.required_outputs() == ()


def test_generic_reason_without_drops() -> None:
    assert generic_reason({"tools": 3}, {"x": 0}) == (
        "its inputs had rows (tools: 3) and nothing was counted as dropped"
    )


def test_run_jobs_stops_at_the_empty_stage_unless_allowed(lake: Lake) -> None:
    jobs = [ingest(), ToyTasks(ToyParams()), ToyTrajectories(NoParams())]
    with pytest.raises(EmptyOutputError) as stopped:
        run_jobs(lake, jobs)
    error = stopped.value
    assert [o.stage for o in error.outcomes] == ["ingest-catalog", "toy-tasks"]
    assert str(error) == (
        f"toy-tasks wrote no tasks: its inputs had rows (tools: {SAMPLE_TOOLS}); "
        "dropped: task_below_threshold: 31"
    )
    assert "toy-trajectories" not in {r.started.job for r in lake.runs()}
    assert lake.read("tasks").count_rows() == 0  # the empty stage's commit stays

    # Run again, the reused empty stage stops the pipeline where the first run stopped.
    with pytest.raises(EmptyOutputError, match=r"toy-tasks wrote no tasks \(reused run run-"):
        run_jobs(lake, jobs)

    outcomes = run_jobs(lake, jobs, allow_empty=True)
    assert [o.stage for o in outcomes] == ["ingest-catalog", "toy-tasks", "toy-trajectories"]
    assert list(outcomes[1].empty) == ["tasks"] and outcomes[2].empty == {}
