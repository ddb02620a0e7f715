"""``astra search``: full-text and semantic search over tools, tasks and trajectories."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from astra.options import DEFAULT_LAKE, FormatOption, LakeOption, SnapshotOption
from astra.output import OutputFormat, err_console, print_json, print_rows
from lake import Lake, LakeError

app = typer.Typer(
    help="Search tools, tasks and trajectories: full text (BM25) or by meaning (embeddings). "
    "Build the index first with `astra run build-search-index`.",
    no_args_is_help=True,
)


class SearchTable(enum.StrEnum):
    TOOLS = "tools"
    TASKS = "tasks"
    TRAJECTORIES = "trajectories"


TableOption = Annotated[
    SearchTable | None,
    typer.Option("--table", "-t", help="Only hits from this source table (default: all)."),
]
LimitOption = Annotated[int, typer.Option("--limit", "-n", help="Most hits to show.", min=1)]


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(2)


def _search(
    mode: str,
    query: str,
    table: SearchTable | None,
    limit: int,
    snapshot: str | None,
    lake: str,
    fmt: OutputFormat,
) -> None:
    from jobs.search import SearchIndex, SearchIndexMissing, hits_as_rows

    opened = Lake(lake)
    try:
        index = SearchIndex.open(opened, snapshot)
        run = index.text if mode == "text" else index.similar
        hits = run(query, table.value if table else None, limit)
    except (SearchIndexMissing, LakeError, ValueError) as exc:
        raise _fail(str(exc.args[0]) if exc.args else str(exc)) from None
    if snapshot is None:
        for line in index.stale(opened):
            err_console.print(
                f"[yellow]warning:[/] the search index is older than the tables ({line}); "
                "rerun `astra run build-search-index` to search the latest rows",
                soft_wrap=True,
            )
    rows = hits_as_rows(hits)
    if fmt is OutputFormat.JSON:
        print_json(
            {
                "mode": mode,
                "query": query,
                "table": table.value if table else None,
                "snapshot": snapshot,
                "index": {
                    "version": index.version,
                    "sources": index.sources,
                    "vector_index": index.vector_indexed,
                },
                "hits": rows,
            }
        )
        return
    sources = ", ".join(f"{t}@{v}" for t, v in sorted(index.sources.items()))
    how = "BM25" if mode == "text" else ("IVF_PQ" if index.vector_indexed else "exact, flat")
    title = f"{len(rows)} hits for {query!r} (search_docs@{index.version} over {sources}; {how})"
    print_rows(rows, fmt, title=title, columns=["table", "row_id", "score", "snippet"])


@app.command("text")
def search_text(
    query: Annotated[
        str, typer.Argument(help='Words to find, e.g. "cancel booking"; ranked by BM25.')
    ],
    table: TableOption = None,
    limit: LimitOption = 10,
    snapshot: SnapshotOption = None,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Full-text search: rows whose text contains the query's words, best BM25 score first."""
    _search("text", query, table, limit, snapshot, lake, fmt)


@app.command("similar")
def search_similar(
    query: Annotated[
        str,
        typer.Argument(
            help="A row id (tool-..., task-..., traj-...: rows like it, itself left out) "
            'or free text (e.g. "reserve a hotel room"), matched by meaning.'
        ),
    ],
    table: TableOption = None,
    limit: LimitOption = 10,
    snapshot: SnapshotOption = None,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Semantic search: rows closest in meaning (cosine of all-MiniLM-L6-v2 embeddings)."""
    _search("similar", query, table, limit, snapshot, lake, fmt)
