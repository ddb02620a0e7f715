"""Groups from linked pairs, and the cluster rows a level writes."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.dedup import DedupCluster, DedupLevel


def connected_components(edges: Iterable[tuple[str, str, float]]) -> list[tuple[list[str], float]]:
    """Groups of ids linked by ``(a, b, similarity)`` edges, each with its lowest link, sorted.

    >>> connected_components([("b", "a", 0.9), ("c", "b", 0.85), ("x", "y", 1.0)])
    [(['a', 'b', 'c'], 0.85), (['x', 'y'], 1.0)]
    """
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    links = list(edges)
    for a, b, _ in links:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    lowest: dict[str, float] = {}
    members: dict[str, list[str]] = {}
    for a, _, similarity in links:
        r = root(a)
        lowest[r] = min(lowest.get(r, similarity), similarity)
    for node in parent:
        members.setdefault(root(node), []).append(node)
    return sorted((sorted(m), lowest[r]) for r, m in members.items())


def cluster_rows(
    level: DedupLevel,
    table: str,
    version: int,
    groups: Iterable[tuple[list[str], float]],
    keys: dict[str, str] | None = None,
    run_id: str | None = None,
    parents: dict[str, list[str]] | None = None,
    dropping: set[str] | None = None,
) -> list[DedupCluster]:
    """One row per group of two or more members.

    The representative is the smallest id among the members none of whose ``parents`` are in
    ``dropping`` (so the kept trajectory belongs to the kept task), else the smallest id; the
    other members are added to ``dropping``.

    >>> drop = {"task-b"}
    >>> row = cluster_rows("exact", "trajectories", 1, [(["traj-1", "traj-2"], 1.0)],
    ...     parents={"traj-1": ["task-b"], "traj-2": ["task-a"]}, dropping=drop)[0]
    >>> row.representative, sorted(drop)
    ('traj-2', ['task-b', 'traj-1'])
    """
    rows = []
    for members, similarity in groups:
        if len(members) < 2:
            continue
        ordered = sorted(members)
        alive = [
            m
            for m in ordered
            if not any(p in (dropping or set()) for p in (parents or {}).get(m, []))
        ]
        representative = (alive or ordered)[0]
        if dropping is not None:
            dropping.update(m for m in ordered if m != representative)
        rows.append(
            DedupCluster(
                level=level,
                source_table=table,
                source_version=version,
                members=ordered,
                size=len(ordered),
                representative=representative,
                similarity=round(float(similarity), 6),
                key=(keys or {}).get(ordered[0]),
                parent_ids=ordered,
                run_id=run_id,
            )
        )
    return rows
