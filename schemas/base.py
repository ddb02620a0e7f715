"""Row models for every lake table, and their Arrow schemas.

A table's model is a pydantic class; its Arrow schema is derived from the annotations, so the
two cannot drift. Every data row carries a stable ``id`` (a content hash of the fields that
define it, so the same tool or chain ingested twice is the same row), the ``run_id`` of the
run that wrote it, ``parent_ids`` (the upstream rows it was derived from) and the
``schema_version`` it was written with. Older versions are upcast on read, one step at a time.
"""

from __future__ import annotations

import enum
import hashlib
import json
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

ID_HEX_CHARS = 24


class JsonColumn:
    """Marks a field stored as canonical JSON text (its shape is free-form, like a JSON schema)."""


Json = Annotated[dict[str, Any], JsonColumn()]
"""A JSON object held as a dict in Python and as canonical JSON text in Arrow."""


class VectorColumn:
    """Marks a field stored as a fixed-size list of float32 (an embedding a vector index can
    use), e.g. ``Annotated[list[float], VectorColumn(384)]``."""

    def __init__(self, dims: int) -> None:
        self.dims = dims


def vector_dims(info: Any) -> int | None:
    """The dimension of a vector field (a pydantic ``FieldInfo``), or None."""
    for marker in info.metadata:
        if isinstance(marker, VectorColumn):
            return marker.dims
    return None


def canonical_json(value: Any) -> str:
    """Serialise ``value`` the one way the lake hashes and stores JSON.

    >>> canonical_json({"b": 1, "a": [1, 2]})
    '{"a":[1,2],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_id(prefix: str, values: Mapping[str, Any]) -> str:
    """A stable row id: ``prefix-`` plus the first 24 hex chars of sha256 of canonical JSON.

    >>> content_id("tool", {"name": "f"})
    'tool-b51863f7c96d115644709dbc'
    """
    digest = hashlib.sha256(canonical_json(values).encode()).hexdigest()
    return f"{prefix}-{digest[:ID_HEX_CHARS]}"


def _is_json_field(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return any(isinstance(m, JsonColumn) for m in get_args(annotation)[1:])
    return False


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        raise TypeError(f"unions other than X | None cannot be stored: {annotation!r}")
    return annotation, False


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type that stores values of a model field annotation."""
    annotation, _ = _strip_optional(annotation)
    if _is_json_field(annotation):
        return pa.string()
    origin = get_origin(annotation)
    if origin is Annotated:
        return arrow_type(get_args(annotation)[0])
    if origin is Literal:
        return pa.string()
    if origin in (list, tuple):
        return pa.list_(arrow_type(get_args(annotation)[0]))
    if origin is dict or annotation is dict:
        return pa.string()
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return pa.string()
        if issubclass(annotation, BaseModel):
            return pa.struct(_arrow_fields(annotation))
        scalar = {
            bool: pa.bool_(),
            int: pa.int64(),
            float: pa.float64(),
            str: pa.string(),
            datetime: pa.timestamp("us", tz="UTC"),
        }
        if annotation in scalar:
            return scalar[annotation]
    raise TypeError(f"no Arrow type for annotation {annotation!r}")


def _field_is_json(info: Any) -> bool:
    if any(isinstance(m, JsonColumn) for m in info.metadata):
        return True
    inner, _ = _strip_optional(info.annotation)
    return _is_json_field(inner)


def _arrow_fields(model: type[BaseModel]) -> list[pa.Field]:
    fields = []
    for name, info in model.model_fields.items():
        _, optional = _strip_optional(info.annotation)
        dims = vector_dims(info)
        if dims is not None:
            kind = pa.list_(pa.float32(), dims)
        else:
            kind = pa.string() if _field_is_json(info) else arrow_type(info.annotation)
        fields.append(pa.field(name, kind, nullable=optional))
    return fields


def _json_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, info in model.model_fields.items() if _field_is_json(info))


def _enum_values(annotation: Any) -> tuple[str, ...] | None:
    annotation, _ = _strip_optional(annotation)
    if get_origin(annotation) is Literal:
        return tuple(str(a) for a in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(str(m.value) for m in annotation)
    return None


_SCHEMA_CACHE: dict[type, pa.Schema] = {}


class Struct(BaseModel):
    """A nested value stored as an Arrow struct inside a row."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class TableModel(BaseModel):
    """A model that is stored as a lake table; subclasses set ``TABLE``."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=True)

    TABLE: ClassVar[str]

    @classmethod
    def arrow_schema(cls) -> pa.Schema:
        cached = _SCHEMA_CACHE.get(cls)
        if cached is None:
            cached = _SCHEMA_CACHE[cls] = pa.schema(_arrow_fields(cls))
        return cached

    @classmethod
    def json_fields(cls) -> frozenset[str]:
        return _json_fields(cls)

    @classmethod
    def enum_fields(cls) -> dict[str, tuple[str, ...]]:
        """Columns whose values must come from a fixed set (Literal or Enum fields)."""
        out = {}
        for name, info in cls.model_fields.items():
            values = _enum_values(info.annotation)
            if values is not None:
                out[name] = values
        return out

    def to_record(self) -> dict[str, Any]:
        """This row as a plain dict shaped like its Arrow schema (JSON fields as text)."""
        record = self.model_dump(mode="python")
        for name in self.json_fields():
            if record[name] is not None:
                record[name] = canonical_json(record[name])
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> typing.Self:
        data = dict(record)
        for name in cls.json_fields():
            if isinstance(data.get(name), str):
                data[name] = json.loads(data[name])
        return cls.model_validate(data)

    @classmethod
    def to_arrow(cls, rows: typing.Iterable[TableModel]) -> pa.Table:
        return pa.Table.from_pylist([r.to_record() for r in rows], schema=cls.arrow_schema())


Upcast = Callable[[dict[str, Any]], dict[str, Any]]


class RowRule(typing.NamedTuple):
    """A vectorised row check: ``is_bad(table)`` gives a boolean mask of rows breaking it."""

    reason: str
    is_bad: Callable[[pa.Table], pa.Array]


class Row(TableModel):
    """A data row: content-addressed, with provenance.

    Subclasses set ``TABLE``, ``ID_PREFIX`` and ``ID_FIELDS`` (the fields whose values define
    the row; the id is their content hash). ``SCHEMA_VERSION`` is bumped when the shape changes,
    with ``UPCASTS[v]`` turning a version-``v`` record into a version ``v + 1`` record.
    """

    ID_PREFIX: ClassVar[str]
    ID_FIELDS: ClassVar[tuple[str, ...]]
    SCHEMA_VERSION: ClassVar[int] = 1
    UPCASTS: ClassVar[Mapping[int, Upcast]] = {}
    ROW_RULES: ClassVar[tuple[RowRule, ...]] = ()

    id: str = ""
    run_id: str | None = None
    parent_ids: list[str] = Field(default_factory=list)
    schema_version: int = 0

    @model_validator(mode="before")
    @classmethod
    def _fill_identity(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if not data.get("schema_version"):
            data["schema_version"] = cls.SCHEMA_VERSION
        if not data.get("id"):
            data["id"] = cls.compute_id(data)
        return data

    @classmethod
    def compute_id(cls, values: Mapping[str, Any]) -> str:
        defining = {}
        for name in cls.ID_FIELDS:
            value = values.get(name)
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            elif isinstance(value, list):
                value = [
                    v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value
                ]
            elif isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, datetime):
                value = value.isoformat()
            defining[name] = value
        return content_id(cls.ID_PREFIX, defining)

    @classmethod
    def upcast(cls, record: dict[str, Any]) -> dict[str, Any]:
        """Bring a stored record up to the current schema version, one step at a time."""
        version = int(record.get("schema_version") or 1)
        while version < cls.SCHEMA_VERSION:
            step = cls.UPCASTS.get(version)
            if step is None:
                raise ValueError(
                    f"{cls.TABLE}: no upcast from schema version {version}; "
                    f"add UPCASTS[{version}] to {cls.__name__}"
                )
            record = step(dict(record))
            version += 1
            record["schema_version"] = version
        return record
