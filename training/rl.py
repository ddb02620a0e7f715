"""Online multi-turn RL (GRPO family) against the lake's environments, tools in the sandbox.

One step: groups of ``group_size`` rollouts of one environment each are sampled from the
current policy (:mod:`training.rollout`); a group's advantages are its rewards minus their
mean over their standard deviation. Only groups whose reward standard deviation exceeds
``std_threshold`` (δ) carry a learning signal; adaptive batch filling keeps sampling groups
until ``groups_per_batch`` such groups are collected (or the attempt budget is spent) and
keeps any surplus for the next step. The loss is the token mean, over every sampled token of
the batch (tool output and prompts masked out), of ``-advantage * log p(token)``: on-policy,
one update per batch, no KL and no entropy term (ASTRA's settings). Every rollout, trained on
or not, is written to ``rollouts`` with its exact token ids, mask, tool results and digests,
reward parts, group, policy checkpoint, snapshot and sandbox runtime digest.

trl's ``GRPOTrainer`` is not used: its multi-turn entry points change between releases and
cannot keep the sampled token ids exact across tool turns, which the rollout table promises.
Generation uses transformers (on CUDA when there is a GPU), or with ``vllm`` a vLLM engine
colocated in this process (:mod:`training.vllm_sampler`) whose weights are synced from the
policy after every update; each rollout row and the run's metrics name the generator.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lake import Lake
from sandbox import Sandbox, Session
from schemas import Checkpoint, Environment, EnvTool, Rollout, content_id
from training.models import load, resolve
from training.pinned import PinnedInputs
from training.rewards import REWARDS
from training.rollout import EnvRuntime, Episode, run_episode
from training.vllm_sampler import VLLMOptions, VLLMSampler, transformers_label

TABLES = ["environments", "env_tools"]


@dataclass(frozen=True)
class RLSettings:
    steps: int = field(default=2, metadata={"help": "optimizer updates"})
    group_size: int = field(default=4, metadata={"help": "rollouts per environment group"})
    groups_per_batch: int = field(default=2, metadata={"help": "groups with signal per update"})
    max_groups_per_step: int = field(
        default=6, metadata={"help": "groups sampled at most per step while filling the batch"}
    )
    std_threshold: float = field(
        default=0.01, metadata={"help": "δ: train only on groups whose reward std exceeds it"}
    )
    max_turns: int = field(default=8, metadata={"help": "assistant turns per rollout"})
    max_new_tokens: int = field(default=128, metadata={"help": "tokens sampled per turn"})
    max_tokens: int = field(default=4096, metadata={"help": "tokens per rollout in all"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW rate (paper: 2e-6)"})
    reward: str = field(default="f1", metadata={"help": "reward function: f1, recall, precision"})
    seed: int = field(default=0, metadata={"help": "seed of sampling and environment order"})
    environments: tuple[str, ...] = field(
        default=(), metadata={"help": "train only on these environment ids (default: all)"}
    )

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise ValueError(f"reward {self.reward!r} is not one of {sorted(REWARDS)}")
        if self.group_size < 2:
            raise ValueError("group_size must be at least 2 (advantages compare within a group)")
        for name in ("steps", "groups_per_batch", "max_groups_per_step", "max_turns"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


def sampler(model: Any, tokenizer: Any, settings: RLSettings, seed: int) -> Any:
    """The policy's turn generator: sampled token ids until the end-of-turn token."""
    import torch

    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    counter = [seed]
    device = next(model.parameters()).device

    def generate(ids: list[int]) -> list[int]:
        counter[0] += 1
        torch.manual_seed(counter[0])
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor([ids], device=device),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
                max_new_tokens=settings.max_new_tokens,
                do_sample=True,
                temperature=settings.temperature,
                top_k=0,
                top_p=1.0,
                eos_token_id=end,
                pad_token_id=tokenizer.pad_token_id,
            )
        return [int(t) for t in out[0, len(ids) :]]

    return generate


def advantages(rewards: list[float]) -> list[float]:
    """Group-normalised advantages (zero when the group has no spread).

    >>> advantages([1.0, 0.0, 1.0, 0.0])
    [1.0, -1.0, 1.0, -1.0]
    >>> advantages([0.5, 0.5])
    [0.0, 0.0]
    """
    mean = statistics.fmean(rewards)
    spread = statistics.pstdev(rewards)
    if spread == 0:
        return [0.0 for _ in rewards]
    return [(r - mean) / spread for r in rewards]


def grpo_loss(model: Any, sequences: list[tuple[list[int], list[int], float]]) -> Any:
    """Token-mean policy-gradient loss over (token ids, loss mask, advantage) sequences."""
    import torch

    total = sum(sum(mask[1:]) for _, mask, _ in sequences)
    if total == 0:
        return None
    device = next(model.parameters()).device
    loss = torch.zeros((), device=device)
    for ids, mask, advantage in sequences:
        tokens = torch.tensor([ids], device=device)
        logits = model(input_ids=tokens).logits[0, :-1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        chosen = logp.gather(1, tokens[0, 1:].unsqueeze(1)).squeeze(1)
        weights = torch.tensor(mask[1:], dtype=chosen.dtype, device=device)
        loss = loss - advantage * (chosen * weights).sum()
    return loss / total


@dataclass
class RLResult:
    run_id: str
    output_dir: Path
    checkpoint: Checkpoint
    rollouts: list[Rollout]
    metrics: dict[str, Any]


def _rollout_row(
    episode: Episode,
    group_id: str,
    index: int,
    policy: str,
    snapshot: str,
    runtime: str,
    generator: str,
) -> Rollout:
    return Rollout(
        environment_id=episode.environment_id,
        group_id=group_id,
        sample_index=index,
        policy_checkpoint=policy,
        snapshot=snapshot,
        messages=episode.messages,
        token_ids=episode.token_ids,
        loss_mask=episode.loss_mask,
        tool_results=episode.tool_results,
        reward=episode.reward,
        reward_parts=episode.reward_parts,
        runtime_digest=runtime,
        generator=generator,
        parent_ids=[episode.environment_id],
    )


def load_runtimes(pinned: PinnedInputs, sandbox: Sandbox) -> list[EnvRuntime]:
    envs = [Environment.from_record(r) for r in pinned.read("environments").to_arrow().to_pylist()]
    tools = {
        r["id"]: EnvTool.from_record(r) for r in pinned.read("env_tools").to_arrow().to_pylist()
    }
    return [EnvRuntime(sandbox, env, tools) for env in sorted(envs, key=lambda e: e.id)]


def run_rl(
    lake: Lake,
    snapshot: str | None,
    model: str,
    output_dir: Path,
    settings: RLSettings = RLSettings(),
    generate: Any = None,
    model_cache: Path = Path(".cache/models"),
    vllm: VLLMOptions | None = None,
) -> RLResult:
    """Train ``model`` (a folder) with multi-turn GRPO on the snapshot's environments.

    ``generate`` replaces the policy's sampler (tests drive a gold policy through it); the
    update still goes through the model's own log-probabilities of the tokens produced.
    ``vllm`` samples through a colocated vLLM engine instead of transformers.
    """
    import torch

    if generate is not None and vllm is not None:
        raise ValueError("give either generate or vllm, not both")
    pinned = PinnedInputs.resolve(lake, snapshot)
    path = resolve(model, model_cache)
    policy, tokenizer = load(path)
    if torch.cuda.is_available():  # generation and updates on the GPU when there is one
        policy.to("cuda")
    optimizer = torch.optim.AdamW(policy.parameters(), lr=settings.learning_rate)
    output_dir.mkdir(parents=True, exist_ok=True)
    inputs = pinned.inputs(TABLES)
    engine = (
        VLLMSampler(
            path,
            tokenizer.convert_tokens_to_ids("<|im_end|>"),
            settings.temperature,
            settings.max_new_tokens,
            settings.max_tokens,
            settings.seed,
            vllm,
        )
        if vllm is not None
        else None
    )
    generator = "given" if generate else engine.label if engine else transformers_label()
    params = {
        "snapshot": pinned.snapshot.name,
        "model": model,
        "generator": generator,
        "settings": asdict(settings),
        "content_hashes": {p.table: p.content_hash for p in inputs},
    }
    rng = random.Random(settings.seed)
    timings = {"generation_s": 0.0, "sandbox_s": 0.0, "update_s": 0.0, "lake_s": 0.0}
    with (
        _closing(engine),
        Sandbox() as sandbox,
        lake.run(
            "train-rl",
            params,
            seed=settings.seed,
            inputs={p.table: p.version for p in inputs},
            idempotent=False,
        ) as run,
    ):
        runtimes = [
            r
            for r in load_runtimes(pinned, sandbox)
            if not settings.environments or r.env.id in settings.environments
        ]
        if not runtimes:
            raise ValueError(
                f"snapshot {pinned.snapshot.name!r} has no environments to train on; run "
                "`astra pipeline environments` and pin a new snapshot (or check --env ids)"
            )
        draw = generate or engine or sampler(policy, tokenizer, settings, settings.seed)
        timed = _timed(draw, timings)
        buffer: deque[list[tuple[Episode, float]]] = deque()
        rows: list[Rollout] = []
        history = []
        start = time.perf_counter()
        for step in range(settings.steps):
            policy_name = f"{model}@step{step}"
            batch = [buffer.popleft() for _ in range(min(len(buffer), settings.groups_per_batch))]
            sampled = skipped = 0
            while len(batch) < settings.groups_per_batch and sampled < settings.max_groups_per_step:
                runtime = runtimes[rng.randrange(len(runtimes))]
                group_id = content_id(
                    "grp",
                    {"run": run.run_id, "step": step, "n": sampled, "env": runtime.env.id},
                )
                policy.eval()
                episodes = [
                    run_episode(
                        runtime,
                        tokenizer,
                        timed,
                        settings.max_turns,
                        settings.max_tokens,
                        settings.reward,
                    )
                    for _ in range(settings.group_size)
                ]
                sampled += 1
                timings["sandbox_s"] += sum(e.sandbox_s for e in episodes)
                rows.extend(
                    _rollout_row(e, group_id, i, policy_name, pinned.snapshot.name,
                                 sandbox.runtime_digest, generator)
                    for i, e in enumerate(episodes)
                )  # fmt: skip
                rewards = [e.reward for e in episodes]
                if statistics.pstdev(rewards) <= settings.std_threshold:
                    skipped += 1
                    continue
                group = list(zip(episodes, advantages(rewards), strict=True))
                (batch if len(batch) < settings.groups_per_batch else buffer).append(group)
            loss_value = None
            if batch:
                tick = time.perf_counter()
                policy.train()
                sequences = [(e.token_ids, e.loss_mask, a) for g in batch for e, a in g]
                loss = grpo_loss(policy, sequences)
                if loss is not None:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    loss_value = float(loss.detach())
                timings["update_s"] += time.perf_counter() - tick
                if engine is not None and loss is not None:
                    engine.sync(policy)  # on-policy: the next rollouts see these weights
            history.append(
                {
                    "step": step,
                    "groups_sampled": sampled,
                    "groups_skipped_no_variance": skipped,
                    "groups_trained": len(batch),
                    "buffered": len(buffer),
                    "loss": loss_value,
                    "mean_reward": statistics.fmean(
                        r.reward or 0.0 for r in rows if r.policy_checkpoint == policy_name
                    ),
                }
            )
        seconds = time.perf_counter() - start
        final = output_dir / "final"
        policy.to("cpu").save_pretrained(final)
        tokenizer.save_pretrained(final)
        meta = {**pinned.metadata(TABLES), "run_id": run.run_id, "kind": "rl", "base_model": model}
        (final / "astra_checkpoint.json").write_text(json.dumps(meta, indent=2))
        tick = time.perf_counter()
        run.append("rollouts", Rollout.to_arrow(rows))
        steps_env = sum(len(r.tool_results) for r in rows)
        metrics = {
            "generator": generator,
            "steps": settings.steps,
            "rollouts": len(rows),
            "environment_steps": steps_env,
            "seconds": round(seconds, 3),
            "environment_steps_per_s": round(steps_env / seconds, 3) if seconds else 0.0,
            "history": history,
            **{k: round(v, 3) for k, v in timings.items()},
        }
        if engine is not None:
            metrics |= {
                "vllm_start_s": round(engine.start_s, 3),
                "weight_syncs": engine.syncs,
                "weight_sync_s": round(engine.sync_s, 3),
            }
        checkpoint = Checkpoint(
            kind="rl",
            training_run=run.run_id,
            step=settings.steps,
            path=str(final.resolve()),
            base_model=model,
            snapshot=pinned.snapshot.name,
            inputs=inputs,
            metrics=metrics,
            parent_ids=sorted({r.environment_id for r in rows}),
        )
        run.append("checkpoints", Checkpoint.to_arrow([checkpoint]))
        timings["lake_s"] += time.perf_counter() - tick
        metrics["lake_s"] = round(timings["lake_s"], 3)
        run.metrics.update({k: v for k, v in metrics.items() if k != "history"})
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return RLResult(run.run_id, output_dir, checkpoint, rows, metrics)


@contextmanager
def _closing(engine: VLLMSampler | None) -> Iterator[None]:
    try:
        yield
    finally:
        if engine is not None:
            engine.close()


def _timed(generate: Any, timings: dict[str, float]) -> Any:
    def timed(ids: list[int]) -> list[int]:
        tick = time.perf_counter()
        try:
            return generate(ids)
        finally:
            timings["generation_s"] += time.perf_counter() - tick

    return timed


def replay_rollout(lake: Lake, rollout: Rollout, sandbox: Sandbox) -> list[tuple[str, str]]:
    """Re-run a stored rollout's tool calls from the lake in a fresh session: (stored digest,
    replayed digest) per call. Equal pairs mean the rollout reproduces its tool outputs."""
    env = next(
        Environment.from_record(r)
        for r in lake.read("environments", snapshot=rollout.snapshot).to_arrow().to_pylist()
        if r["id"] == rollout.environment_id
    )
    tools = {
        r["id"]: EnvTool.from_record(r)
        for r in lake.read("env_tools", snapshot=rollout.snapshot).to_arrow().to_pylist()
    }
    runtime = EnvRuntime(sandbox, env, tools)
    session: Session = runtime.session(0)
    calls = {c.id: c for m in rollout.messages for c in m.tool_calls}
    pairs = []
    for result in rollout.tool_results:
        call = calls[result.call_id]
        if call.name not in runtime.names:
            pairs.append((result.result_digest, ""))
            continue
        again = session.call_function(call.name, json.loads(call.arguments))
        pairs.append((result.result_digest, again.result_digest))
    return pairs
