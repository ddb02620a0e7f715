"""ASTRA Lake's typed configuration: a TOML file plus CLI overrides.

Sections are frozen dataclasses; every field has help text in ``metadata["help"]`` and every
rule is checked in ``__post_init__`` with a message naming the rule and the fix. The defaults
are the embedded offline setup (no model server, Spark in local mode). Secrets never live in
the file: ``llm.api_key_env`` names the environment variable the CLI reads the key from.

>>> config = load_config(None, {"llm.backend": "openai", "llm.base_url": "http://127.0.0.1:8000",
...                              "llm.model": "qwen3-8b", "synthesis.max_turns": "12"})
>>> config.llm.backend, config.synthesis.max_turns
('openai', 12)
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

LLMBackendKind = Literal["offline", "openai", "vllm"]
AugmentKind = Literal["diverse", "complicate", "persona"]
SPARK_MASTER = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://.+|yarn|k8s://.+)$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """A configuration value or file that breaks a rule; the message says how to fix it."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class LLMConfig:
    """Which model backend synthesis steps use, and how to call it."""

    backend: LLMBackendKind = field(
        default="offline",
        metadata=_help(
            "offline: the deterministic built-in synthesizer (no model); openai: any "
            "OpenAI-compatible server such as `vllm serve`; vllm: vLLM's in-process engine "
            "(GPU, needs the gpu extra)"
        ),
    )
    base_url: str | None = field(
        default=None,
        metadata=_help("server URL for backend 'openai', e.g. http://127.0.0.1:8000/v1"),
    )
    model: str | None = field(
        default=None,
        metadata=_help("model name sent to the server, or the model path vLLM loads"),
    )
    api_key_env: str | None = field(
        default=None,
        metadata=_help("name of the environment variable holding the API key (never the key)"),
    )
    timeout_s: float = field(default=120.0, metadata=_help("seconds to wait for one reply"))
    temperature: float = field(
        default=0.0, metadata=_help("sampling temperature of generation and judging calls")
    )
    vote_temperature: float = field(
        default=0.7, metadata=_help("sampling temperature of the chain-verification votes")
    )
    votes: int = field(default=3, metadata=_help("sampled judgments per chain vote"))
    max_tokens: int = field(default=1024, metadata=_help("most tokens one reply may have"))
    max_retries: int = field(
        default=2,
        metadata=_help("extra attempts after an unparsable reply or a failed call"),
    )
    tensor_parallel_size: int = field(
        default=1, metadata=_help("GPUs one vLLM engine spans (backend 'vllm')")
    )
    gpu_memory_utilization: float = field(
        default=0.9, metadata=_help("share of GPU memory the vLLM engine may take")
    )

    def __post_init__(self) -> None:
        url_ok = bool(self.base_url) and self.base_url.startswith(("http://", "https://"))
        if self.backend == "openai" and not url_ok:
            raise ConfigError(
                "llm.base_url: backend 'openai' needs an http(s) URL; set llm.base_url, "
                f"e.g. http://127.0.0.1:8000/v1 (got {self.base_url!r})"
            )
        if self.backend in ("openai", "vllm") and not self.model:
            raise ConfigError(f"llm.model: backend {self.backend!r} needs a model; set llm.model")
        if self.backend == "offline" and (self.base_url or self.model):
            raise ConfigError(
                "llm.backend: base_url and model are set but the backend is 'offline', which "
                "uses no model; set llm.backend to 'openai' or 'vllm', or remove them"
            )
        if self.api_key_env is not None and not ENV_NAME.match(self.api_key_env):
            raise ConfigError(
                f"llm.api_key_env: {self.api_key_env!r} is not an environment variable name; "
                "give the variable's name (e.g. OPENAI_API_KEY), never the key itself"
            )
        if self.timeout_s <= 0:
            raise ConfigError(f"llm.timeout_s must be > 0, got {self.timeout_s}")
        for name in ("temperature", "vote_temperature"):
            value = getattr(self, name)
            if not 0.0 <= value <= 2.0:
                raise ConfigError(f"llm.{name} must be within [0, 2], got {value}")
        if self.votes < 1:
            raise ConfigError(f"llm.votes must be >= 1 (a vote needs a judgment), got {self.votes}")
        if self.max_tokens < 1:
            raise ConfigError(f"llm.max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.max_retries <= 10:
            raise ConfigError(
                f"llm.max_retries must be within [0, 10] (retries are bounded), "
                f"got {self.max_retries}"
            )
        if self.tensor_parallel_size < 1:
            raise ConfigError(
                f"llm.tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}"
            )
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(
                "llm.gpu_memory_utilization must be within (0, 1], "
                f"got {self.gpu_memory_utilization}"
            )


@dataclass(frozen=True)
class SparkSettings:
    """Where Spark jobs run."""

    master: str = field(
        default="local[*]",
        metadata=_help("Spark master: local[*], local[N], spark://HOST:PORT, yarn or k8s://URL"),
    )
    app_name: str = field(default="astra-lake", metadata=_help("Spark application name"))
    shuffle_partitions: int = field(
        default=8, metadata=_help("spark.sql.shuffle.partitions for synthesis jobs")
    )

    def __post_init__(self) -> None:
        if not SPARK_MASTER.match(self.master):
            raise ConfigError(
                f"spark.master: {self.master!r} is not a Spark master URL; use local[*], "
                "local[N], spark://HOST:PORT, yarn or k8s://URL"
            )
        if not self.app_name.strip():
            raise ConfigError("spark.app_name must not be empty")
        if self.shuffle_partitions < 1:
            raise ConfigError(
                f"spark.shuffle_partitions must be >= 1, got {self.shuffle_partitions}"
            )


@dataclass(frozen=True)
class SynthesisConfig:
    """Sizes, bounds and thresholds of trajectory synthesis (ASTRA part 1)."""

    edge_min_score: float = field(
        default=0.6,
        metadata=_help("a schema match (output field -> required parameter) must score >= this"),
    )
    max_degree: int = field(
        default=16,
        metadata=_help(
            "keep a graph edge only if among the N strongest out of its source or into its "
            "target (0: keep all)"
        ),
    )
    chains_per_server: int = field(
        default=50, metadata=_help("chains sampled per tool server (the walk budget's target)")
    )
    walk_attempts_per_chain: int = field(
        default=20, metadata=_help("random-walk attempts allowed per wanted chain")
    )
    min_chain_length: int = field(default=2, metadata=_help("fewest tools in a chain"))
    max_chain_length: int = field(default=5, metadata=_help("most tools in a chain"))
    acyclic: bool = field(default=True, metadata=_help("forbid a tool twice in one chain"))
    queries_per_chain: int = field(default=2, metadata=_help("user queries generated per chain"))
    augmentations: tuple[AugmentKind, ...] = field(
        default=("diverse", "complicate", "persona"),
        metadata=_help("augmentations applied to each query: diverse, complicate, persona"),
    )
    task_min_score: float = field(
        default=3.0, metadata=_help("a task is kept when every rubric score (1-5) is >= this")
    )
    max_turns: int = field(default=20, metadata=_help("most model calls in one trajectory"))
    offered_tools: int = field(
        default=16,
        metadata=_help(
            "tools offered to the agent per task: the chain's, its graph neighbours, then "
            "others (0: all of the server's; large APIs have thousands)"
        ),
    )
    failure_rate: float = field(
        default=0.2, metadata=_help("share of tool calls answered with an injected failure")
    )
    tool_simulator: Literal["auto", "offline", "llm"] = field(
        default="auto",
        metadata=_help(
            "who answers calls of tools without code: llm (ASTRA's simulator, needs an LLM "
            "backend), offline (schema-conformant, deterministic), or auto (llm when an LLM "
            "backend is configured)"
        ),
    )
    simulator_history: int = field(
        default=4, metadata=_help("recent calls the LLM tool simulator sees")
    )
    reward_threshold: float = field(
        default=0.6, metadata=_help("a trajectory enters sft_examples when its mean reward >= this")
    )
    eval_fraction: float = field(
        default=0.05, metadata=_help("share of selected trajectories put in the eval split")
    )

    def __post_init__(self) -> None:
        positive = ("chains_per_server", "walk_attempts_per_chain", "queries_per_chain")
        for name in (*positive, "max_turns"):
            if getattr(self, name) < 1:
                raise ConfigError(f"synthesis.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.edge_min_score <= 1.0:
            raise ConfigError(
                f"synthesis.edge_min_score must lie in [0, 1], got {self.edge_min_score}"
            )
        if self.offered_tools < 0:
            raise ConfigError(
                f"synthesis.offered_tools must be 0 (all) or more, got {self.offered_tools}"
            )
        if self.max_degree < 0:
            raise ConfigError(
                f"synthesis.max_degree must be 0 (no cap) or more, got {self.max_degree}"
            )
        if self.min_chain_length < 2:
            raise ConfigError(
                "synthesis.min_chain_length must be >= 2 (a chain links at least two tools), "
                f"got {self.min_chain_length}"
            )
        if self.max_chain_length < self.min_chain_length:
            raise ConfigError(
                f"synthesis.max_chain_length ({self.max_chain_length}) must be >= "
                f"synthesis.min_chain_length ({self.min_chain_length}); raise the maximum or "
                "lower the minimum"
            )
        if len(set(self.augmentations)) != len(self.augmentations):
            raise ConfigError(f"synthesis.augmentations lists a kind twice: {self.augmentations}")
        if not 1.0 <= self.task_min_score <= 5.0:
            raise ConfigError(
                f"synthesis.task_min_score is on the 1-5 rubric scale, got {self.task_min_score}"
            )
        if not 0.0 <= self.failure_rate < 1.0:
            raise ConfigError(
                f"synthesis.failure_rate must be within [0, 1) (ASTRA uses 0.2), "
                f"got {self.failure_rate}"
            )
        if self.simulator_history < 0:
            raise ConfigError(
                f"synthesis.simulator_history must be >= 0, got {self.simulator_history}"
            )
        if not 0.0 <= self.reward_threshold <= 1.0:
            raise ConfigError(
                f"synthesis.reward_threshold is a mean reward in [0, 1], "
                f"got {self.reward_threshold}"
            )
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(
                f"synthesis.eval_fraction must be within [0, 1), got {self.eval_fraction}"
            )


@dataclass(frozen=True)
class EnvironmentsConfig:
    """Environment synthesis (ASTRA part 2): traces, tools, merging, distractors."""

    qa_source: Literal["trajectories", "llm", "both"] = field(
        default="trajectories",
        metadata=_help(
            "QA traces from the lake's trajectories, from an LLM seeded with each server's "
            "domain and tools (needs an LLM backend), or both"
        ),
    )
    llm_traces_per_server: int = field(
        default=4, metadata=_help("QA traces the LLM writes per server")
    )
    min_steps: int = field(
        default=2, metadata=_help("a QA trace needs at least this many sub-questions")
    )
    keep_percentile: float = field(
        default=85.0,
        metadata=_help(
            "with an LLM backend, keep QA traces scoring at least this percentile (ASTRA: 85-90)"
        ),
    )
    merge_threshold: float = field(
        default=0.9,
        metadata=_help(
            "same-structure tools of different servers merge at this embedding cosine similarity"
        ),
    )
    distractors_per_band: int = field(
        default=2, metadata=_help("distractor tools per similarity band (high, medium, low)")
    )
    decoys_per_row: int = field(
        default=2, metadata=_help("decoy entries per recorded call in a lookup tool's mock data")
    )

    def __post_init__(self) -> None:
        if self.min_steps < 1:
            raise ConfigError(f"environments.min_steps must be >= 1, got {self.min_steps}")
        if self.llm_traces_per_server < 1:
            raise ConfigError(
                f"environments.llm_traces_per_server must be >= 1, got {self.llm_traces_per_server}"
            )
        if not 0.0 <= self.keep_percentile <= 100.0:
            raise ConfigError(
                f"environments.keep_percentile must lie in [0, 100], got {self.keep_percentile}"
            )
        if not 0.0 < self.merge_threshold <= 1.0:
            raise ConfigError(
                f"environments.merge_threshold must lie in (0, 1], got {self.merge_threshold}"
            )
        for name in ("distractors_per_band", "decoys_per_row"):
            if getattr(self, name) < 0:
                raise ConfigError(f"environments.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class AstraConfig:
    """The whole configuration: top-level keys plus the ``llm``, ``spark`` and ``synthesis``
    tables of the TOML file."""

    seed: int = field(default=0, metadata=_help("base seed every job derives its seeds from"))
    llm: LLMConfig = field(default_factory=LLMConfig, metadata=_help("model backend"))
    spark: SparkSettings = field(default_factory=SparkSettings, metadata=_help("Spark"))
    synthesis: SynthesisConfig = field(
        default_factory=SynthesisConfig, metadata=_help("trajectory synthesis")
    )
    environments: EnvironmentsConfig = field(
        default_factory=EnvironmentsConfig, metadata=_help("environment synthesis")
    )

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.environments.qa_source != "trajectories" and self.llm.backend == "offline":
            raise ConfigError(
                f"environments.qa_source {self.environments.qa_source!r} needs an LLM backend; "
                "set llm.backend to 'openai' or 'vllm', or qa_source to 'trajectories'"
            )
        if self.synthesis.tool_simulator == "llm" and self.llm.backend == "offline":
            raise ConfigError(
                "synthesis.tool_simulator 'llm' needs an LLM backend; set llm.backend to "
                "'openai' or 'vllm', or set synthesis.tool_simulator to 'offline' or 'auto'"
            )

    @property
    def tool_simulator(self) -> Literal["offline", "llm"]:
        """The simulator ``auto`` resolves to under this config's backend."""
        if self.synthesis.tool_simulator != "auto":
            return self.synthesis.tool_simulator
        return "offline" if self.llm.backend == "offline" else "llm"


SECTIONS: dict[str, type] = {
    "llm": LLMConfig,
    "spark": SparkSettings,
    "synthesis": SynthesisConfig,
    "environments": EnvironmentsConfig,
}


@dataclass(frozen=True)
class ConfigKey:
    """One settable key, for ``--help`` and documentation."""

    key: str
    type: str
    default: Any
    help: str


def _scalar_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls) if f.name not in SECTIONS}


def _type_name(kind: Any) -> str:
    origin = get_origin(kind)
    if origin is Literal:
        return "|".join(str(a) for a in get_args(kind))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(kind))
    if origin is tuple:
        return f"list of {_type_name(get_args(kind)[0])}"
    return getattr(kind, "__name__", str(kind)).replace("NoneType", "none")


def config_keys() -> list[ConfigKey]:
    """Every dotted key with its type, default and help text."""
    keys = []
    for section, cls in (("", AstraConfig), *SECTIONS.items()):
        hints = typing.get_type_hints(cls)
        for name, f in _scalar_fields(cls).items():
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            dotted = f"{section}.{name}" if section else name
            keys.append(ConfigKey(dotted, _type_name(hints[name]), default, f.metadata["help"]))
    return keys


def _coerce(key: str, kind: Any, value: Any) -> Any:
    """``value`` (from TOML, or a CLI string) as a value of ``kind``."""
    origin = get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        inner = [a for a in get_args(kind) if a is not type(None)]
        return _coerce(key, inner[0], value)
    if origin is Literal:
        allowed = get_args(kind)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")
        return value
    if origin is tuple:
        items = (
            [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        )
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(key, get_args(kind)[0], v) for v in items)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported config type {kind!r}")


def _build(cls: type, prefix: str, values: Mapping[str, Any]) -> Any:
    fields = _scalar_fields(cls)
    unknown = sorted(values.keys() - fields.keys())
    if unknown:
        where = f"[{prefix}]" if prefix else "the top level"
        raise ConfigError(
            f"unknown key(s) {[f'{prefix}.{k}' if prefix else k for k in unknown]} in {where}; "
            f"valid keys: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {
        name: _coerce(f"{prefix}.{name}" if prefix else name, hints[name], value)
        for name, value in values.items()
    }
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> AstraConfig:
    """An :class:`AstraConfig` from a parsed TOML document (nested tables per section)."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    valid = sorted([*SECTIONS, *_scalar_fields(AstraConfig)])
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"[{key}] must be a table, got {value!r}")
            sections[key] = dict(value)
        elif key in _scalar_fields(AstraConfig):
            top[key] = value
        else:
            raise ConfigError(f"unknown key {key!r} at the top level; valid keys: {valid}")
    built = {name: _build(cls, name, sections[name]) for name, cls in SECTIONS.items()}
    hints = typing.get_type_hints(AstraConfig)
    fields = _scalar_fields(AstraConfig)
    top_values = {k: _coerce(k, hints[k], v) for k, v in top.items() if k in fields}
    return AstraConfig(**top_values, **built)


def load_config(path: Path | str | None, overrides: Mapping[str, Any] | None = None) -> AstraConfig:
    """The config from ``path`` (a TOML file; None: the defaults) with dotted ``overrides``
    (``{"llm.model": "qwen3-8b"}``; values may be CLI strings) applied on top."""
    if path is None:
        return load_config_text("", overrides)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the --config path") from None
    try:
        return load_config_text(text, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_config(config: AstraConfig) -> str:
    """The config as TOML text that :func:`load_config` reads back to an equal config
    (``None`` values are left out: absent means None).

    >>> load_config_text(dump_config(AstraConfig())) == AstraConfig()
    True
    """
    lines = []
    for name in _scalar_fields(AstraConfig):
        lines.append(f"{name} = {_toml_value(getattr(config, name))}")
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        values = getattr(config, section)
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if value is not None:
                lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def load_config_text(text: str, overrides: Mapping[str, Any] | None = None) -> AstraConfig:
    """Like :func:`load_config`, from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from None
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for dotted, value in (overrides or {}).items():
        section, _, name = dotted.rpartition(".")
        if section and section not in SECTIONS:
            raise ConfigError(
                f"override {dotted!r}: unknown section {section!r}; valid: {sorted(SECTIONS)}"
            )
        (merged.setdefault(section, {}) if section else merged)[name] = value
    return config_from_dict(merged)
