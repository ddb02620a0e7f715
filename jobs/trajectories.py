"""ASTRA part 1 as Spark jobs: chains -> tasks -> trajectories -> rewards -> SFT examples.

Each stage is one job joined to the others by table names and row ids; the per-server work is
done by the functions in ``jobs.synth`` through a :class:`Synthesizer` (the offline one by
default; an LLM behind an OpenAI-compatible server or vLLM when configured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.base import JobContext
from jobs.stages import (
    BackendParams,
    ServerGroup,
    SparkStage,
    make_synthesizer,
    pack,
    per_server,
)
from jobs.synth.agent import LLMSimulator, OfflineSimulator, offered_tools, run_agent
from jobs.synth.chains import sample_chains, simulation_schemas
from jobs.synth.interface import AugmentKind
from jobs.synth.rewards import REGISTRY, score_trajectory
from jobs.synth.sft import select_sft
from jobs.synth.tasks import passes_rubric, stable_seed
from schemas import (
    Chain,
    Reward,
    Row,
    SFTExample,
    Task,
    Tool,
    ToolEdge,
    Trajectory,
)

# -- chains ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainParams(BackendParams):
    chains_per_server: int = field(default=8, metadata={"help": "distinct chains per server"})
    min_length: int = field(default=2, metadata={"help": "fewest tools in a chain"})
    max_length: int = field(default=5, metadata={"help": "most tools in a chain"})
    acyclic: bool = field(default=True, metadata={"help": "no tool twice in one chain"})
    walk_attempts_per_chain: int = field(
        default=20, metadata={"help": "random-walk attempts allowed per wanted chain"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError("need 1 <= min_length <= max_length")
        if self.chains_per_server < 1:
            raise ValueError("chains_per_server must be at least 1")
        if self.walk_attempts_per_chain < 1:
            raise ValueError("walk_attempts_per_chain must be at least 1")


class SampleChains(SparkStage):
    name: ClassVar[str] = "sample-chains"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "tool graph -> chains: seeded weighted walks, satisfiable only; with an LLM backend, "
        "the vote and back-translation verdicts are recorded on every chain"
    )
    inputs: ClassVar[tuple[str, ...]] = ("tool_servers", "tools", "tool_edges")
    outputs: ClassVar[tuple[str, ...]] = ("chains", "llm_calls")
    Params: ClassVar[type] = ChainParams

    def run(self, ctx: JobContext) -> None:
        params: ChainParams = self.params
        all_servers = self.servers(ctx)
        servers = {s.id: s for s in all_servers}
        seed, api_key = ctx.seed, self.api_key

        def chains_of(group: ServerGroup) -> list[Row]:
            server = servers.get(group.server_id)
            if server is None or not group.of("tools"):
                return []
            sample = sample_chains(
                server,
                group.of("tools"),
                group.of("edges"),
                n=params.chains_per_server,
                min_len=params.min_length,
                max_len=params.max_length,
                acyclic=params.acyclic,
                seed=stable_seed(seed, server.id),
                budget=params.chains_per_server * params.walk_attempts_per_chain,
            )
            group.dropped.update({f"chain_{k}": v for k, v in sample.stats.dropped.items()})
            if params.backend == "offline":
                return list(sample.chains)
            # Every verdict is kept on the chain; generate-tasks uses only fully passed chains.
            synth = make_synthesizer(params, group, all_servers, api_key)
            verified: list[Row] = []
            for chain in sample.chains:
                verdicts = synth.verify_chain(chain, group.of("tools"), stable_seed(seed, chain.id))
                verified.append(chain.model_copy(update={"verdicts": [*chain.verdicts, *verdicts]}))
            return verified

        # Only tools on an edge can be in a chain (a walk starts on an edge and every step,
        # inserted producers too, follows one), so the rest are not shipped.
        edges = self.frame(ctx, "tool_edges")
        endpoints = (
            edges.select(F.col("source_tool_id").alias("id"))
            .union(edges.select(F.col("target_tool_id").alias("id")))
            .distinct()
        )
        tools = self.frame(ctx, "tools").join(endpoints, "id", "left_semi")
        context = {
            "tools": (pack(tools, "tools"), Tool),
            "edges": (pack(edges, "edges"), ToolEdge),
        }
        self.finish(ctx, "chains", per_server(ctx.spark, context, chains_of, Chain))


# -- tasks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskParams(BackendParams):
    queries_per_chain: int = field(default=2, metadata={"help": "queries generated per chain"})
    augmentations: tuple[AugmentKind, ...] = field(
        default=("diverse", "complicate", "persona"),
        metadata={"help": "augmentations per query, comma-separated: diverse,complicate,persona"},
    )
    min_score: float = field(
        default=4.0, metadata={"help": "keep tasks scoring at least this (1-5) on every criterion"}
    )


class GenerateTasks(SparkStage):
    name: ClassVar[str] = "generate-tasks"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "chains -> tasks: queries, augmentations, 1-5 rubric, threshold"
    inputs: ClassVar[tuple[str, ...]] = ("tool_servers", "tools", "tool_edges", "chains")
    outputs: ClassVar[tuple[str, ...]] = ("tasks", "llm_calls")
    Params: ClassVar[type] = TaskParams

    def run(self, ctx: JobContext) -> None:
        params: TaskParams = self.params
        servers = self.servers(ctx)
        by_id = {s.id: s for s in servers}
        seed, api_key = ctx.seed, self.api_key
        criteria = ("query_quality", "scenario_realism", "tool_use_necessity")
        thresholds = dict.fromkeys(criteria, params.min_score)

        def tasks_of(group: ServerGroup) -> list[Row]:
            server = by_id.get(group.server_id)
            if server is None:
                return []
            synth = make_synthesizer(params, group, servers, api_key)
            tools = group.of("tools")
            out: list[Row] = []
            for chain in group.of("chains"):
                if not all(v.passed is True for v in chain.verdicts):
                    # A verdict that failed or could not be made is not a pass.
                    group.dropped["chain_not_verified"] += 1
                    continue
                chain_seed = stable_seed(seed, chain.id)
                queries = synth.generate_queries(
                    server, chain, tools, params.queries_per_chain, chain_seed
                )
                if not queries:
                    group.dropped["task_no_query"] += 1
                for index, query in enumerate(queries):
                    base = Task(
                        server_id=server.id,
                        chain_id=chain.id,
                        query=query,
                        language=server.language,
                        parent_ids=[chain.id],
                    )
                    variants = [base]
                    for kind in params.augmentations:
                        augmented = synth.augment(base, kind, stable_seed(chain_seed, index, kind))
                        if augmented is None:
                            group.dropped[f"augment_failed_{kind}"] += 1
                        else:
                            variants.append(augmented)
                    for task in variants:
                        scores = synth.score_task(task, chain, tools, chain_seed)
                        scored = task.model_copy(update={"scores": scores})
                        if passes_rubric(scores, thresholds):
                            out.append(scored)
                        else:
                            group.dropped["task_below_rubric_threshold"] += 1
            return out

        chains = self.frame(ctx, "chains")
        context = self.context(ctx, chains)
        context["chains"] = (pack(chains, "chains"), Chain)
        self.finish(ctx, "tasks", per_server(ctx.spark, context, tasks_of, Task))


# -- trajectories ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrajectoryParams(BackendParams):
    max_turns: int = field(default=20, metadata={"help": "most model calls per trajectory"})
    failure_rate: float = field(
        default=0.2, metadata={"help": "share of tool calls that fail on purpose (ASTRA: 0.2)"}
    )
    simulator: Literal["offline", "llm"] = field(
        default="offline",
        metadata={"help": "tools without code: offline (schema-conformant) or llm simulator"},
    )
    simulator_history: int = field(
        default=4, metadata={"help": "recent calls the LLM tool simulator sees"}
    )
    offered_tools: int = field(
        default=16,
        metadata={
            "help": "tools offered per task: the chain's, its graph neighbours, then others "
            "(0: every tool of the server)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.offered_tools < 0:
            raise ValueError("offered_tools must be 0 (all) or more")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must lie in [0, 1]")
        if self.simulator == "llm" and self.backend == "offline":
            raise ValueError("simulator=llm needs an LLM backend (backend=openai or vllm)")


class GenerateTrajectories(SparkStage):
    name: ClassVar[str] = "generate-trajectories"
    version: ClassVar[str] = "3"
    description: ClassVar[str] = "tasks -> trajectories: multi-turn agent loop, tools executed"
    inputs: ClassVar[tuple[str, ...]] = ("tool_servers", "tools", "tool_edges", "chains", "tasks")
    outputs: ClassVar[tuple[str, ...]] = ("trajectories", "llm_calls")
    Params: ClassVar[type] = TrajectoryParams

    def run(self, ctx: JobContext) -> None:
        params: TrajectoryParams = self.params
        servers = self.servers(ctx)
        seed, api_key = ctx.seed, self.api_key

        def trajectories_of(group: ServerGroup) -> list[Row]:
            synth = make_synthesizer(params, group, servers, api_key, params.simulator_history)
            inferred = simulation_schemas(group.of("tools"), group.of("edges"))
            executor: Any = (
                LLMSimulator(synth)
                if params.simulator == "llm"
                else OfflineSimulator(inferred=inferred)
            )
            out: list[Row] = []
            chains = {c.id: c for c in group.of("chains")}
            for task in group.of("tasks"):
                chain = chains.get(task.chain_id or "")
                offered = offered_tools(
                    chain.tool_ids if chain else [],
                    group.of("tools"),
                    group.of("edges"),
                    params.offered_tools,
                    stable_seed(seed, "offered", task.id),
                )
                trajectory = run_agent(
                    task,
                    offered,
                    synth,
                    executor,
                    max_turns=params.max_turns,
                    failure_rate=params.failure_rate,
                    seed=stable_seed(seed, task.id),
                )
                if trajectory.status != "completed":
                    group.dropped[f"trajectory_{trajectory.status}"] += 1
                out.append(trajectory)
            return out

        tasks = self.frame(ctx, "tasks")
        context = self.context(ctx, tasks)
        context["tasks"] = (pack(tasks, "tasks"), Task)
        context["chains"] = (pack(self.of_servers(ctx, "chains", tasks), "chains"), Chain)
        result = per_server(ctx.spark, context, trajectories_of, Trajectory)
        self.finish(ctx, "trajectories", result)


def _with_server(trajectories: DataFrame, tasks: DataFrame) -> DataFrame:
    """Trajectories with their task's server id, as ``_server``."""
    servers = tasks.select(F.col("id").alias("_task"), F.col("server_id").alias("_server"))
    joined = trajectories.join(servers, trajectories["task_id"] == servers["_task"], "inner")
    return joined.drop("_task")


# -- rewards ---------------------------------------------------------------------------------


class ScoreTrajectories(SparkStage):
    name: ClassVar[str] = "score-trajectories"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "trajectories -> rewards: rule checks, plus judges with an LLM"
    inputs: ClassVar[tuple[str, ...]] = (
        "tool_servers",
        "tools",
        "tool_edges",
        "chains",
        "tasks",
        "trajectories",
    )
    outputs: ClassVar[tuple[str, ...]] = ("rewards", "llm_calls")
    Params: ClassVar[type] = BackendParams

    def run(self, ctx: JobContext) -> None:
        params: BackendParams = self.params
        servers = self.servers(ctx)
        seed, api_key = ctx.seed, self.api_key

        def rewards_of(group: ServerGroup) -> list[Row]:
            synth = make_synthesizer(params, group, servers, api_key)
            chains = {c.id: c for c in group.of("chains")}
            chain_of_task = {t.id: t.chain_id for t in group.of("tasks")}
            out: list[Row] = []
            for trajectory in group.of("trajectories"):
                chain = chains.get(chain_of_task.get(trajectory.task_id) or "")
                rules = score_trajectory(trajectory, group.of("tools"), chain)
                judged = synth.judge_trajectory(
                    trajectory, group.of("tools"), stable_seed(seed, trajectory.id)
                )
                out.extend(rules)
                out.extend(judged)
            return out

        tasks = self.frame(ctx, "tasks")
        trajectories = _with_server(self.frame(ctx, "trajectories"), tasks)
        context = self.context(ctx, trajectories.select(F.col("_server").alias("server_id")))
        context["chains"] = (pack(self.frame(ctx, "chains"), "chains"), Chain)
        context["tasks"] = (pack(tasks, "tasks"), Task)
        context["trajectories"] = (pack(trajectories, "trajectories", "_server"), Trajectory)
        self.finish(ctx, "rewards", per_server(ctx.spark, context, rewards_of, Reward))


# -- SFT ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SFTParams:
    threshold: float = field(
        default=0.9, metadata={"help": "keep trajectories whose mean rule reward is at least this"}
    )
    eval_fraction: float = field(default=0.1, metadata={"help": "share held out for eval"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0 or not 0.0 <= self.eval_fraction <= 1.0:
            raise ValueError("threshold and eval_fraction must lie in [0, 1]")


class SelectSFT(SparkStage):
    name: ClassVar[str] = "select-sft"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "trajectories + rewards -> sft_examples above the threshold"
    inputs: ClassVar[tuple[str, ...]] = (
        "tool_servers",
        "tools",
        "tool_edges",
        "tasks",
        "trajectories",
        "rewards",
    )
    outputs: ClassVar[tuple[str, ...]] = ("sft_examples",)
    Params: ClassVar[type] = SFTParams

    def run(self, ctx: JobContext) -> None:
        params: SFTParams = self.params
        domains = {s.id: s.domain for s in self.servers(ctx)}
        seed = ctx.seed
        # Rule rewards only: model-judged dimensions are missing offline and must not count.
        weights = dict.fromkeys(REGISTRY, 1.0)

        def examples_of(group: ServerGroup) -> list[Row]:
            examples = select_sft(
                group.of("trajectories"),
                group.of("rewards"),
                group.of("tools"),
                threshold=params.threshold,
                eval_fraction=params.eval_fraction,
                seed=seed,
                weights=weights,
            )
            kept = {e.trajectory_id for e in examples}
            group.dropped["sft_below_threshold"] += len(group.of("trajectories")) - len(kept)
            domain = domains.get(group.server_id, "general")
            return [e.model_copy(update={"domain": domain}) for e in examples]

        tasks = self.frame(ctx, "tasks")
        trajectories = _with_server(self.frame(ctx, "trajectories"), tasks)
        rewards = self.frame(ctx, "rewards")
        traj_servers = trajectories.select(
            F.col("id").alias("_traj"), F.col("_server").alias("_server")
        )
        rewards = rewards.join(traj_servers, rewards["target_id"] == traj_servers["_traj"])
        rewards = rewards.drop("_traj")
        servers_of = trajectories.select(F.col("_server").alias("server_id"))
        context = {
            "tools": (pack(self.of_servers(ctx, "tools", servers_of), "tools"), Tool),
            "trajectories": (pack(trajectories, "trajectories", "_server"), Trajectory),
            "rewards": (pack(rewards, "rewards", "_server"), Reward),
        }
        result = per_server(ctx.spark, context, examples_of, SFTExample)
        self.finish(ctx, "sft_examples", result)


TRAJECTORY_STAGES: tuple[type[SparkStage], ...] = (
    SampleChains,
    GenerateTasks,
    GenerateTrajectories,
    ScoreTrajectories,
    SelectSFT,
)
