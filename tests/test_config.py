"""jobs.config: TOML round trip, CLI overrides, and every validation rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jobs.config import (
    AstraConfig,
    ConfigError,
    EnvironmentsConfig,
    LLMConfig,
    SparkSettings,
    SynthesisConfig,
    config_keys,
    dump_config,
    load_config,
    load_config_text,
)

SERVED = """
seed = 7

[llm]
backend = "openai"
base_url = "http://127.0.0.1:8000/v1"
model = "Qwen/Qwen3-8B"
api_key_env = "ASTRA_LLM_KEY"
timeout_s = 30
votes = 5

[spark]
master = "spark://127.0.0.1:7077"

[synthesis]
chains_per_server = 100
max_chain_length = 4
acyclic = false
augmentations = ["diverse", "persona"]
failure_rate = 0.1
"""


def test_defaults_are_the_offline_setup() -> None:
    config = load_config(None)
    assert config == AstraConfig()
    assert config.llm.backend == "offline" and config.llm.base_url is None
    assert config.spark.master == "local[*]"
    assert (config.synthesis.min_chain_length, config.synthesis.max_chain_length) == (2, 5)
    assert config.synthesis.failure_rate == 0.2


def test_toml_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "astra.toml"
    path.write_text(SERVED)
    config = load_config(path)
    assert config.seed == 7
    assert config.llm.model == "Qwen/Qwen3-8B" and config.llm.timeout_s == 30.0
    assert config.llm.api_key_env == "ASTRA_LLM_KEY" and config.llm.votes == 5
    assert config.spark.master == "spark://127.0.0.1:7077"
    assert config.synthesis.augmentations == ("diverse", "persona")
    assert config.synthesis.acyclic is False
    again = tmp_path / "again.toml"
    again.write_text(dump_config(config))
    assert load_config(again) == config
    assert load_config_text(dump_config(AstraConfig())) == AstraConfig()


def test_cli_overrides_apply_on_top_and_are_coerced(tmp_path: Path) -> None:
    path = tmp_path / "astra.toml"
    path.write_text(SERVED)
    config = load_config(
        path,
        {
            "seed": "11",
            "llm.temperature": "0.5",
            "llm.api_key_env": "none",
            "spark.master": "local[2]",
            "synthesis.acyclic": "true",
            "synthesis.augmentations": "complicate",
            "synthesis.max_turns": 8,
        },
    )
    assert config.seed == 11 and config.llm.temperature == 0.5
    assert config.llm.api_key_env is None and config.llm.model == "Qwen/Qwen3-8B"
    assert config.spark.master == "local[2]" and config.synthesis.acyclic is True
    assert config.synthesis.augmentations == ("complicate",)
    assert config.synthesis.max_turns == 8


def test_unknown_keys_name_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) \['llm.modle'\].*valid keys: .*'model'"
    ):
        load_config_text('[llm]\nmodle = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'sparks'.*valid keys: .*'spark'"):
        load_config_text('[sparks]\nmaster = "local"\n')
    with pytest.raises(ConfigError, match=r"unknown section 'lm'"):
        load_config(None, {"lm.model": "x"})
    with pytest.raises(ConfigError, match="valid keys"):
        load_config(None, {"synthesis.chain_count": "3"})


def test_type_and_file_errors() -> None:
    with pytest.raises(ConfigError, match=r"synthesis.max_turns: expected a whole number"):
        load_config(None, {"synthesis.max_turns": "many"})
    with pytest.raises(ConfigError, match=r"llm.backend: 'ollama' is not one of"):
        load_config(None, {"llm.backend": "ollama"})
    with pytest.raises(ConfigError, match=r"synthesis.acyclic: expected true or false"):
        load_config_text("[synthesis]\nacyclic = 1\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/no/such/astra.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_text("[llm\n")


OPENAI = {"backend": "openai", "base_url": "http://h:1/v1", "model": "m"}


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (LLMConfig, {"backend": "openai", "model": "m"}, "needs an http"),
        (LLMConfig, {**OPENAI, "base_url": "h:1"}, "needs an http"),
        (LLMConfig, {"backend": "vllm"}, "needs a model"),
        (LLMConfig, {"model": "m"}, "backend is 'offline'"),
        (LLMConfig, {**OPENAI, "api_key_env": "sk-123 secret"}, "never the key"),
        (LLMConfig, {"timeout_s": 0}, "timeout_s must be > 0"),
        (LLMConfig, {"temperature": 3.0}, "temperature must be within"),
        (LLMConfig, {"vote_temperature": -1.0}, "vote_temperature must be within"),
        (LLMConfig, {"votes": 0}, "votes must be >= 1"),
        (LLMConfig, {"max_tokens": 0}, "max_tokens must be >= 1"),
        (LLMConfig, {"max_retries": 11}, "retries are bounded"),
        (LLMConfig, {"tensor_parallel_size": 0}, "tensor_parallel_size"),
        (LLMConfig, {"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        (SparkSettings, {"master": "localhost"}, "not a Spark master URL"),
        (SparkSettings, {"app_name": " "}, "app_name must not be empty"),
        (SparkSettings, {"shuffle_partitions": 0}, "shuffle_partitions"),
        (SynthesisConfig, {"chains_per_server": 0}, "chains_per_server must be >= 1"),
        (SynthesisConfig, {"walk_attempts_per_chain": 0}, "walk_attempts_per_chain"),
        (SynthesisConfig, {"queries_per_chain": 0}, "queries_per_chain"),
        (SynthesisConfig, {"max_turns": 0}, "max_turns must be >= 1"),
        (SynthesisConfig, {"min_chain_length": 1}, "at least two tools"),
        (SynthesisConfig, {"min_chain_length": 4, "max_chain_length": 3}, "raise the maximum"),
        (SynthesisConfig, {"augmentations": ("diverse", "diverse")}, "kind twice"),
        (SynthesisConfig, {"task_min_score": 0.5}, "1-5 rubric scale"),
        (SynthesisConfig, {"failure_rate": 1.0}, "failure_rate must be within"),
        (SynthesisConfig, {"simulator_history": -1}, "simulator_history"),
        (SynthesisConfig, {"reward_threshold": 1.5}, "reward_threshold"),
        (SynthesisConfig, {"eval_fraction": 1.0}, "eval_fraction"),
        (AstraConfig, {"seed": -1}, "seed must be >= 0"),
    ],
)
def test_each_rule_rejects_with_its_fix(cls: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**kwargs)


def test_valid_edge_values_pass() -> None:
    for master in ("local", "local[2]", "local[*]", "spark://10.0.0.1:7077", "yarn"):
        assert SparkSettings(master=master).master == master
    assert LLMConfig(backend="vllm", model="/models/qwen3").model == "/models/qwen3"
    assert SynthesisConfig(min_chain_length=3, max_chain_length=3, failure_rate=0.0).acyclic


def test_every_key_has_help_and_a_default() -> None:
    keys = {k.key: k for k in config_keys()}
    assert {"seed", "llm.backend", "llm.api_key_env", "spark.master", "synthesis.acyclic"} <= set(
        keys
    )
    assert all(k.help for k in keys.values())
    assert keys["llm.backend"].type == "offline|openai|vllm"
    assert keys["synthesis.max_chain_length"].default == 5
    sections = (LLMConfig, SparkSettings, SynthesisConfig, EnvironmentsConfig)
    assert len(keys) == 1 + sum(len(dataclasses.fields(c)) for c in sections)


def test_configs_are_frozen() -> None:
    config = AstraConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3  # type: ignore[misc]
