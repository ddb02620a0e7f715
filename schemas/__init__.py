"""Table schemas of ASTRA Lake. Imports nothing else of the project."""

from __future__ import annotations

from schemas.base import Json, Row, Struct, TableModel, canonical_json, content_id
from schemas.chains import Chain, Verdict
from schemas.checkpoints import Checkpoint
from schemas.dedup import DedupCluster
from schemas.environments import Distractor, Environment, EnvTool, ExpectedAnswer
from schemas.evals import Eval
from schemas.events import EventRecord
from schemas.graph import EdgeEvidence, ToolEdge
from schemas.llm import LLMCall
from schemas.qa import QACheck, QATrace, SubQuestion
from schemas.rejects import Reject
from schemas.rewards import JudgeStatus, Reward
from schemas.rollouts import Rollout
from schemas.search import SearchDoc
from schemas.sft import FunctionSpec, SFTExample
from schemas.snapshots import SnapshotRecord
from schemas.tasks import Task
from schemas.tools import Tool, ToolServer
from schemas.trajectories import Message, ToolCall, Trajectory

DATA_TABLES: dict[str, type[Row]] = {
    model.TABLE: model
    for model in (
        ToolServer,
        Tool,
        ToolEdge,
        Chain,
        Task,
        Trajectory,
        Reward,
        SFTExample,
        LLMCall,
        QATrace,
        EnvTool,
        Environment,
        Rollout,
        Checkpoint,
        Eval,
        DedupCluster,
        SearchDoc,
        Reject,
    )
}
"""Every data table, by name. Rows of each are content-addressed and carry provenance."""

SYSTEM_TABLES: dict[str, type[TableModel]] = {
    EventRecord.TABLE: EventRecord,
    SnapshotRecord.TABLE: SnapshotRecord,
}

TABLE_BY_ID_PREFIX: dict[str, str] = {m.ID_PREFIX: name for name, m in DATA_TABLES.items()}


def table_of_row_id(row_id: str) -> str | None:
    """The table a row id belongs to, from its prefix.

    >>> table_of_row_id("tool-0123456789abcdef01234567")
    'tools'
    """
    prefix, _, _ = row_id.partition("-")
    return TABLE_BY_ID_PREFIX.get(prefix)


__all__ = [
    "DATA_TABLES",
    "SYSTEM_TABLES",
    "Chain",
    "Checkpoint",
    "DedupCluster",
    "Distractor",
    "EdgeEvidence",
    "EnvTool",
    "Environment",
    "Eval",
    "EventRecord",
    "ExpectedAnswer",
    "FunctionSpec",
    "Json",
    "JudgeStatus",
    "LLMCall",
    "Message",
    "QACheck",
    "QATrace",
    "Reject",
    "Reward",
    "Rollout",
    "Row",
    "SFTExample",
    "SearchDoc",
    "SnapshotRecord",
    "Struct",
    "SubQuestion",
    "TableModel",
    "Task",
    "Tool",
    "ToolCall",
    "ToolEdge",
    "ToolServer",
    "Trajectory",
    "Verdict",
    "canonical_json",
    "content_id",
    "table_of_row_id",
]
