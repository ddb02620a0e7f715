"""Builders of small, real rows shared by tests."""

from __future__ import annotations

import pyarrow as pa

from schemas import Chain, Message, Task, Tool, ToolCall, ToolServer, Trajectory, Verdict


def servers_table(servers: list[ToolServer]) -> pa.Table:
    return ToolServer.to_arrow(servers)


def tools_table(tools: list[Tool]) -> pa.Table:
    return Tool.to_arrow(tools)


def derived_rows(tools: list[Tool]) -> tuple[Chain, Task, Trajectory]:
    """A chain over two real tools, a task from it and a trajectory solving it."""
    first, second = tools[0], tools[1]
    chain = Chain(
        server_id=first.server_id,
        tool_ids=[first.id, second.id],
        tool_names=[first.name, second.name],
        length=2,
        seed=7,
        verdicts=[Verdict(verifier="satisfiability", passed=True)],
        parent_ids=[first.id, second.id],
    )
    task = Task(
        server_id=first.server_id,
        chain_id=chain.id,
        query="Find me a flight from Paris to Rome next Friday and tell me its details.",
        parent_ids=[chain.id],
    )
    trajectory = Trajectory(
        task_id=task.id,
        tool_ids=[first.id, second.id],
        messages=[
            Message(role="user", content=task.query),
            Message(
                role="assistant",
                tool_calls=[ToolCall(id="c1", name=first.name, arguments='{"origin": "CDG"}')],
            ),
            Message(role="tool", tool_call_id="c1", name=first.name, content='{"flights": []}'),
            Message(role="assistant", content="There are no flights that day."),
        ],
        agent_model="tiny",
        executor="offline_simulator",
        seed=1,
        n_turns=2,
        n_tool_calls=1,
        status="completed",
        final_answer="There are no flights that day.",
        parent_ids=[task.id],
    )
    return chain, task, trajectory
