"""Dedup and benchmark decontamination of queries, trajectories and tool code.

Levels: ``exact`` (normalised text, call sequences, canonical syntax trees), ``near`` (MinHash
LSH on Spark, verified by Jaccard), ``semantic`` (sentence embeddings, LanceDB neighbours) and
``contamination`` (word n-gram overlap with BFCL and tau2-bench prompts). ``curate`` turns the
findings into new versions of the curated tables; see ``jobs.dedup.jobs``.
"""

from __future__ import annotations

from jobs.dedup.jobs import (
    CURATED_TABLES,
    DEDUP_JOBS,
    Curate,
    Decontaminate,
    DedupExact,
    DedupNear,
    DedupSemantic,
)

__all__ = [
    "CURATED_TABLES",
    "DEDUP_JOBS",
    "Curate",
    "Decontaminate",
    "DedupExact",
    "DedupNear",
    "DedupSemantic",
]
