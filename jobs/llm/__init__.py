"""LLM backends for synthesis: chat clients, the call log, versioned prompts, structured
replies with bounded retries, and the LLM-backed ``Synthesizer``.

Nothing here reads the environment: the CLI resolves ``llm.api_key_env`` to a key and passes
it to :func:`chat_backend`.
"""

from __future__ import annotations

from jobs.config import LLMConfig
from jobs.llm.client import (
    BackendError,
    BackendUnavailable,
    CallLog,
    ChatBackend,
    ChatReply,
    ChatRequest,
    OpenAICompatibleBackend,
    VLLMOfflineBackend,
)
from jobs.llm.prompts import Prompt, PromptError, load_prompt
from jobs.llm.structured import Structured, ask_structured, derive_seed
from jobs.llm.synthesizer import LLMSynthesizer


def chat_backend(config: LLMConfig, api_key: str | None = None) -> ChatBackend:
    """The chat backend ``config`` describes. The ``offline`` backend has no chat model (the
    deterministic synthesizer in ``jobs.synth`` stands in for it), so asking for one is an error.
    """
    if config.backend == "openai":
        assert config.base_url is not None and config.model is not None  # checked by LLMConfig
        return OpenAICompatibleBackend(
            config.base_url, config.model, api_key=api_key, timeout_s=config.timeout_s
        )
    if config.backend == "vllm":
        assert config.model is not None
        return VLLMOfflineBackend(
            config.model,
            engine_args={
                "tensor_parallel_size": config.tensor_parallel_size,
                "gpu_memory_utilization": config.gpu_memory_utilization,
            },
        )
    raise ValueError(
        "llm.backend 'offline' uses the deterministic synthesizer, not a chat model; "
        "set llm.backend to 'openai' or 'vllm' to get a chat backend"
    )


def llm_synthesizer(
    config: LLMConfig, call_log: CallLog, api_key: str | None = None, simulator_history: int = 4
) -> LLMSynthesizer:
    """An :class:`LLMSynthesizer` over :func:`chat_backend`, with the config's sampling settings."""
    return LLMSynthesizer(
        chat_backend(config, api_key),
        call_log,
        votes=config.votes,
        retries=config.max_retries,
        temperature=config.temperature,
        vote_temperature=config.vote_temperature,
        max_tokens=config.max_tokens,
        simulator_history=simulator_history,
    )


__all__ = [
    "BackendError",
    "BackendUnavailable",
    "CallLog",
    "ChatBackend",
    "ChatReply",
    "ChatRequest",
    "LLMSynthesizer",
    "OpenAICompatibleBackend",
    "Prompt",
    "PromptError",
    "Structured",
    "VLLMOfflineBackend",
    "ask_structured",
    "chat_backend",
    "derive_seed",
    "llm_synthesizer",
    "load_prompt",
]
