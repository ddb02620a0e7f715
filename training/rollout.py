"""Multi-turn rollouts of a policy against a lake environment, every tool call in the sandbox.

The token sequence is built incrementally and never re-tokenised: the prompt is rendered by
the chat template once; each assistant turn appends exactly the token ids that were sampled
(loss mask 1); each tool turn appends the template's rendering of the tool responses (loss
mask 0, so tool output is never trained on). A turn's text is parsed for ``<tool_call>``
JSON objects (the template's format); each call runs in one sandbox session of the
environment (its tools and its distractors, each tool in its own scope). The episode stops
when a turn has no tool call, every sub-task is solved, the turn limit or the token limit is
reached.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox import Environment as SandboxEnvironment
from sandbox import Sandbox, Session, tools_module
from schemas import Environment, EnvTool, Message, ToolCall
from schemas.rollouts import RewardPart, ToolResult
from training.rewards import REWARDS, outcome_of, recall

TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)

#: (token ids so far) -> the sampled continuation's token ids, ending at the turn's end.
Generate = Callable[[list[int]], list[int]]


def tool_schemas(tools: Sequence[EnvTool]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            },
        }
        for t in tools
    ]


def parse_tool_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, arguments) of each well-formed ``<tool_call>`` in a turn; others are ignored.

    >>> parse_tool_calls('<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>')
    [('f', {'x': 1})]
    >>> parse_tool_calls("<tool_call>{not json}</tool_call> no call here")
    []
    """
    calls = []
    for blob in TOOL_CALL.findall(text):
        try:
            body = json.loads(blob)
        except json.JSONDecodeError:
            continue
        if isinstance(body, dict) and isinstance(body.get("name"), str):
            arguments = body.get("arguments") or {}
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError:
                    continue
            if isinstance(arguments, dict):
                calls.append((body["name"], arguments))
    return calls


@dataclass
class Episode:
    """One rollout: exact tokens, mask, messages, tool results and reward parts."""

    environment_id: str
    token_ids: list[int]
    loss_mask: list[int]
    messages: list[Message]
    tool_results: list[ToolResult] = field(default_factory=list)
    reward: float = 0.0
    reward_parts: list[RewardPart] = field(default_factory=list)
    prompt_length: int = 0
    sandbox_s: float = 0.0


class EnvRuntime:
    """An environment ready to run: its module code, tools and a fresh session per episode."""

    def __init__(self, sandbox: Sandbox, env: Environment, tools: dict[str, EnvTool]) -> None:
        self.sandbox = sandbox
        self.env = env
        self.tools = [tools[i] for i in [*env.tool_ids, *env.distractor_tool_ids] if i in tools]
        self.code = tools_module([(t.name, t.code) for t in self.tools])
        self.names = {t.name for t in self.tools}

    def session(self, seed: int = 0) -> Session:
        return Session(
            self.sandbox,
            SandboxEnvironment(code=self.code, initial_state=self.env.initial_state),
            seed=seed,
        )

    def prompt_messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.env.user_background:
            messages.append({"role": "system", "content": f"User: {self.env.user_background}"})
        messages.append({"role": "user", "content": self.env.prompt})
        return messages


def _tool_turn_text(contents: list[str]) -> str:
    """The chat template's rendering of consecutive tool messages, then the next assistant
    header (Qwen2.5 format)."""
    body = "".join(f"\n<tool_response>\n{c}\n</tool_response>" for c in contents)
    return f"<|im_start|>user{body}<|im_end|>\n<|im_start|>assistant\n"


def run_episode(
    runtime: EnvRuntime,
    tokenizer: Any,
    generate: Generate,
    max_turns: int = 8,
    max_tokens: int = 4096,
    reward: str = "f1",
    seed: int = 0,
) -> Episode:
    """One multi-turn rollout of ``generate`` in ``runtime`` (see the module docstring)."""
    messages = runtime.prompt_messages()
    prompt_ids = list(
        tokenizer.apply_chat_template(
            messages,
            tools=tool_schemas(runtime.tools),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
    )
    episode = Episode(
        environment_id=runtime.env.id,
        token_ids=list(prompt_ids),
        loss_mask=[0] * len(prompt_ids),
        messages=[Message(role=m["role"], content=m["content"]) for m in messages],
        prompt_length=len(prompt_ids),
    )
    session = runtime.session(seed)
    done: list[tuple[str, Any]] = []
    for turn in range(max_turns):
        room = max_tokens - len(episode.token_ids)
        if room <= 0:
            break
        sampled = generate(episode.token_ids)[:room]
        episode.token_ids.extend(sampled)
        episode.loss_mask.extend([1] * len(sampled))
        text = tokenizer.decode(sampled, skip_special_tokens=False)
        calls = parse_tool_calls(text)
        content = TOOL_CALL.sub("", text).replace("<|im_end|>", "").strip() or None
        call_rows = [
            ToolCall(id=f"call_{turn}_{i}", name=n, arguments=json.dumps(a, sort_keys=True))
            for i, (n, a) in enumerate(calls)
        ]
        episode.messages.append(Message(role="assistant", content=content, tool_calls=call_rows))
        if not calls:
            break
        contents = []
        for row, (name, arguments) in zip(call_rows, calls, strict=True):
            if name not in runtime.names:
                result = None
                value: Any = {"error": f"no tool named {name}"}
                digest = ""
            else:
                tick = time.perf_counter()
                result = session.call_function(name, arguments)
                episode.sandbox_s += time.perf_counter() - tick
                value = result.value if result.ok else {"error": result.error_message}
                digest = result.result_digest
            shown = json.dumps(value, ensure_ascii=False, sort_keys=True)
            contents.append(shown)
            done.append((name, value))
            episode.tool_results.append(
                ToolResult(
                    call_id=row.id,
                    name=name,
                    ok=bool(result and result.ok),
                    value_json=shown,
                    error=None
                    if result and result.ok
                    else str(value.get("error", ""))
                    if isinstance(value, dict)
                    else None,
                    result_digest=digest,
                )
            )
            episode.messages.append(
                Message(role="tool", content=shown, tool_call_id=row.id, name=name)
            )
        tail = tokenizer.encode(_tool_turn_text(contents), add_special_tokens=False)
        if sampled and sampled[-1] != tokenizer.convert_tokens_to_ids("<|im_end|>"):
            tail = tokenizer.encode("<|im_end|>\n", add_special_tokens=False) + tail
        else:
            tail = tokenizer.encode("\n", add_special_tokens=False) + tail
        episode.token_ids.extend(tail)
        episode.loss_mask.extend([0] * len(tail))
        if recall(outcome_of(runtime.env.expected, done)) == 1.0:
            break
    outcome = outcome_of(runtime.env.expected, done)
    episode.reward = REWARDS[reward](outcome)
    episode.reward_parts = [
        RewardPart(name=name, value=round(fn(outcome), 6)) for name, fn in sorted(REWARDS.items())
    ]
    return episode
