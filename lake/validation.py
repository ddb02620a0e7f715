"""Validating writes against a table's schema.

The fast path is vectorised (casts and Arrow compute checks) so large writes stay near raw
Lance speed; only when a column cannot be cast at all does it fall back to checking rows one by
one, to find exactly which rows are bad. Bad rows become ``Reject`` rows with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from lake.errors import SchemaMismatchError
from schemas import Reject, Row
from schemas.base import ID_HEX_CHARS


@dataclass(frozen=True)
class Validated:
    """The rows that passed, cast to the table's schema, and rejects for the rest."""

    good: pa.Table
    rejects: list[Reject]
    duplicates_skipped: int

    @property
    def reject_reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reject in self.rejects:
            key = reject.reason.split(":", 1)[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def _fill_missing(model: type[Row], data: pa.Table) -> pa.Table:
    schema = model.arrow_schema()
    unknown = [n for n in data.column_names if n not in schema.names]
    if unknown:
        raise SchemaMismatchError(
            f"table {model.TABLE!r} has no column(s) {unknown}; its columns are {schema.names}. "
            "Rename or drop them before writing."
        )
    n = data.num_rows
    for name in schema.names:
        if name in data.column_names:
            continue
        info = model.model_fields[name]
        field = schema.field(name)
        if name == "id":
            values: list[Any] = [model.compute_id(r) for r in data.to_pylist()]
        elif name == "schema_version":
            values = [model.SCHEMA_VERSION] * n
        elif info.is_required():
            raise SchemaMismatchError(
                f"table {model.TABLE!r} needs column {name!r} ({field.type}); it is missing."
            )
        else:
            default = info.get_default(call_default_factory=True)
            values = [default] * n
        data = data.append_column(pa.field(name, field.type), pa.array(values, field.type))
    return data.select(schema.names)


def _cast_columns(model: type[Row], data: pa.Table) -> pa.Table | None:
    """Cast every column to the schema's type (by name, never by position), or None."""
    schema = model.arrow_schema()
    try:
        columns = [data.column(f.name).cast(f.type) for f in schema]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    return pa.Table.from_arrays(columns, schema=schema)


def _row_problems(model: type[Row], table: pa.Table) -> list[tuple[str, pa.Array]]:
    """(reason, bad-row mask) pairs from vectorised checks."""
    schema = model.arrow_schema()
    problems: list[tuple[str, pa.Array]] = []
    for field in schema:
        if not field.nullable:
            problems.append(
                (
                    f"null_value: column {field.name!r} must not be null",
                    pc.is_null(table[field.name]),
                )
            )
    for name, allowed in model.enum_fields().items():
        column = table[name]
        bad = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, pa.array(allowed))))
        problems.append((f"invalid_value: column {name!r} must be one of {list(allowed)}", bad))
    id_pattern = rf"^{model.ID_PREFIX}-[0-9a-f]{{{ID_HEX_CHARS}}}$"
    bad_id = pc.invert(pc.fill_null(pc.match_substring_regex(table["id"], id_pattern), False))
    problems.append((f"invalid_id: id must match {id_pattern}", bad_id))
    too_new = pc.greater(table["schema_version"], model.SCHEMA_VERSION)
    problems.append(("schema_too_new: written by a newer schema version than this code", too_new))
    for name in model.json_fields():
        mask = [not _is_json_object(v) for v in table[name].to_pylist()]
        problems.append((f"invalid_json: column {name!r} must hold a JSON object", pa.array(mask)))
    for rule in model.ROW_RULES:
        problems.append((rule.reason, rule.is_bad(table)))
    return problems


def _is_json_object(value: Any) -> bool:
    if value is None:
        return True  # nullability is checked separately
    try:
        return isinstance(json.loads(value), dict)
    except (TypeError, ValueError):
        return False


def _reject(model: type[Row], source: str, reason: str, record: dict[str, Any]) -> Reject:
    """A reject keeping the raw row as JSON (values JSON cannot hold are written as text)."""
    payload = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return Reject(table=model.TABLE, source=source, reason=reason, payload=payload)


def _validate_rowwise(
    model: type[Row], data: pa.Table, source: str
) -> tuple[pa.Table, list[Reject]]:
    good: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for record in data.to_pylist():
        try:
            row = model.from_record(record)
        except (ValidationError, ValueError, TypeError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else {"msg": str(exc)}
            where = ".".join(str(p) for p in first.get("loc", ())) or "row"
            reason = f"invalid_type: {where}: {first['msg']}"
            rejects.append(_reject(model, source, reason, record))
            continue
        good.append(row.to_record())
    return pa.Table.from_pylist(good, schema=model.arrow_schema()), rejects


def validate(model: type[Row], data: pa.Table, source: str) -> Validated:
    """Split ``data`` into rows fit for ``model``'s table and rejects with reasons."""
    data = _fill_missing(model, data)
    cast = _cast_columns(model, data)
    rejects: list[Reject] = []
    if cast is None:
        cast, rejects = _validate_rowwise(model, data, source)
    bad_any = pa.array(np.zeros(cast.num_rows, dtype=bool))
    # An empty write has nothing to check (and its masks have no type to fill).
    for reason, mask in _row_problems(model, cast) if cast.num_rows else ():
        mask = pc.fill_null(mask, False)
        if not pc.any(mask).as_py():
            continue
        newly_bad = pc.and_(mask, pc.invert(bad_any))
        for record in cast.filter(newly_bad).to_pylist():
            rejects.append(_reject(model, source, reason, record))
        bad_any = pc.or_(bad_any, mask)
    good = cast.filter(pc.invert(bad_any)) if pc.any(bad_any).as_py() else cast
    duplicates = 0
    # polars' n_unique is several times faster than Arrow's count_distinct on string ids.
    if good.num_rows and pl.from_arrow(good["id"]).n_unique() != good.num_rows:
        # The same content-addressed row twice in one write is one row.
        first = np.zeros(good.num_rows, dtype=bool)
        first[_first_indices(good["id"].to_pylist())] = True
        duplicates = good.num_rows - int(first.sum())
        good = good.filter(pa.array(first))
    return Validated(good=good, rejects=rejects, duplicates_skipped=duplicates)


def _first_indices(ids: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    for index, row_id in enumerate(ids):
        seen.setdefault(row_id, index)
    return list(seen.values())


def prepare_rows(model: type[Row], data: pa.Table, source: str, run_id: str) -> Validated:
    """Validate ``data`` and stamp the good rows with ``run_id``: what every writer does before
    its rows become Lance data files (in this process or on a Spark executor)."""
    checked = validate(model, data, source)
    good = checked.good
    stamp = pa.array([run_id] * good.num_rows, pa.string())
    good = good.set_column(good.schema.get_field_index("run_id"), "run_id", stamp)
    rejects = [r.model_copy(update={"run_id": run_id}) for r in checked.rejects]
    return Validated(good=good, rejects=rejects, duplicates_skipped=checked.duplicates_skipped)
