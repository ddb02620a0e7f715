"""``astra pipeline``: the synthesis stages run in order, each an idempotent job."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from jobs.base import CountProgressFn, Job
from jobs.config import AstraConfig
from jobs.environments import BuildEnvironments, EnvParams, QAParams, SynthesizeQA
from jobs.graph import BuildToolGraph, GraphParams
from jobs.ingest import IngestCatalog, IngestParams
from jobs.runner import StageOutcome, run_jobs
from jobs.spark import SparkConfig, SparkSessionFactory
from jobs.stages import BackendParams, SparkStage
from jobs.trajectories import (
    ChainParams,
    GenerateTasks,
    GenerateTrajectories,
    SampleChains,
    ScoreTrajectories,
    SelectSFT,
    SFTParams,
    TaskParams,
    TrajectoryParams,
)
from lake import Lake


def outcome_rows(
    outcomes: Sequence[StageOutcome], dropped: str = "dropped"
) -> list[dict[str, Any]]:
    """One printable row per stage outcome: its run, whether it was reused, the rows it wrote
    per table, what it dropped (or found) by reason, and a ``note`` naming each required
    output it left empty and why (``StageOutcome.empty``)."""
    return [
        {
            "stage": o.stage,
            "run_id": o.result.run.run_id,
            "reused": o.result.reused,
            "written": ", ".join(f"{c.table}: {c.rows_written}" for c in o.result.run.commits),
            dropped: ", ".join(f"{k}: {v}" for k, v in sorted(o.result.dropped.items())),
            "note": "; ".join(f"wrote no {table}: {reason}" for table, reason in o.empty.items()),
        }
        for o in outcomes
    ]


def spark_factory(config: AstraConfig) -> SparkSessionFactory:
    return SparkSessionFactory(
        SparkConfig(
            master=config.spark.master,
            app_name=config.spark.app_name,
            shuffle_partitions=config.spark.shuffle_partitions,
        )
    )


def api_key(config: AstraConfig) -> str | None:
    """The LLM server key, read from the environment variable the config names (CLI only)."""
    name = config.llm.api_key_env
    return os.environ.get(name) if name else None


def trajectory_jobs(config: AstraConfig, source: str) -> list[Job]:
    """The stages of ``astra pipeline trajectories`` with params from the config."""
    synthesis, llm = config.synthesis, config.llm
    backend: dict[str, Any] = BackendParams.fields_from(llm)
    key = api_key(config)
    stages: list[SparkStage] = [
        BuildToolGraph(
            GraphParams(
                **backend,
                min_score=synthesis.edge_min_score,
                max_degree=synthesis.max_degree,
            )
        ),
        SampleChains(
            ChainParams(
                **backend,
                chains_per_server=synthesis.chains_per_server,
                min_length=synthesis.min_chain_length,
                max_length=synthesis.max_chain_length,
                acyclic=synthesis.acyclic,
                walk_attempts_per_chain=synthesis.walk_attempts_per_chain,
            )
        ),
        GenerateTasks(
            TaskParams(
                **backend,
                queries_per_chain=synthesis.queries_per_chain,
                augmentations=tuple(synthesis.augmentations),
                min_score=synthesis.task_min_score,
            )
        ),
        GenerateTrajectories(
            TrajectoryParams(
                **backend,
                max_turns=synthesis.max_turns,
                failure_rate=synthesis.failure_rate,
                simulator=config.tool_simulator,
                simulator_history=synthesis.simulator_history,
                offered_tools=synthesis.offered_tools,
            )
        ),
        ScoreTrajectories(BackendParams(**backend)),
        SelectSFT(
            SFTParams(threshold=synthesis.reward_threshold, eval_fraction=synthesis.eval_fraction)
        ),
    ]
    return [
        IngestCatalog(IngestParams(source=source)),
        *(stage.with_api_key(key) for stage in stages),
    ]


def environment_jobs(config: AstraConfig) -> list[Job]:
    """The stages of ``astra pipeline environments`` with params from the config."""
    env = config.environments
    backend = BackendParams.fields_from(config.llm)
    return [
        SynthesizeQA(
            QAParams(
                **backend,
                source=env.qa_source,
                llm_traces_per_server=env.llm_traces_per_server,
                min_steps=env.min_steps,
                keep_percentile=env.keep_percentile,
            )
        ).with_api_key(api_key(config)),
        BuildEnvironments(
            EnvParams(
                **backend,
                merge_threshold=env.merge_threshold,
                distractors_per_band=env.distractors_per_band,
                decoys_per_row=env.decoys_per_row,
            )
        ).with_api_key(api_key(config)),
    ]


def run_trajectory_pipeline(
    lake: Lake,
    config: AstraConfig,
    source: str,
    on_stage: Any = None,
    factory: SparkSessionFactory | None = None,
    count_progress: CountProgressFn | None = None,
    allow_empty: bool = False,
) -> list[StageOutcome]:
    """Run every trajectory stage in order; a given ``factory`` is reused and left running.
    A stage that writes no rows raises ``jobs.runner.EmptyOutputError`` unless ``allow_empty``."""
    jobs = trajectory_jobs(config, source)
    return run_stages(lake, config, jobs, on_stage, factory, count_progress, allow_empty)


def run_environment_pipeline(
    lake: Lake,
    config: AstraConfig,
    on_stage: Any = None,
    factory: SparkSessionFactory | None = None,
    count_progress: CountProgressFn | None = None,
    allow_empty: bool = False,
) -> list[StageOutcome]:
    """Run every environment stage in order, on the trajectories already in the lake.
    A stage that writes no rows raises ``jobs.runner.EmptyOutputError`` unless ``allow_empty``."""
    jobs = environment_jobs(config)
    return run_stages(lake, config, jobs, on_stage, factory, count_progress, allow_empty)


def run_stages(
    lake: Lake,
    config: AstraConfig,
    jobs: list[Job],
    on_stage: Any = None,
    factory: SparkSessionFactory | None = None,
    count_progress: CountProgressFn | None = None,
    allow_empty: bool = False,
) -> list[StageOutcome]:
    """Run ``jobs`` in order with ``jobs.runner.run_jobs``; a given ``factory`` is reused and
    left running.

    ``on_stage(name)`` is called as each job starts; ``count_progress`` gets the jobs' Spark
    task counts and rows written; ``allow_empty`` runs every stage even after one left a
    required output empty (see ``run_jobs``)."""
    owned = factory is None
    session = factory or spark_factory(config)
    try:
        outcomes = run_jobs(
            lake,
            jobs,
            seed=config.seed,
            spark_factory=session,
            on_stage=on_stage,
            count_progress=count_progress,
            allow_empty=allow_empty,
        )
    finally:
        if owned:
            session.stop()
    return outcomes
