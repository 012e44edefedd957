"""Write docs/reliability.md from docs/reliability/chaos-report.json (every figure comes from that run)."""
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stream_app.devstack.chaos import chaos_line  # noqa: E402

r = json.loads((ROOT / "docs" / "reliability" / "chaos-report.json").read_text())
rec = r["recovery_seconds"]
fmt = lambda d: (f"{d['queried']} queried, {d['positives']} positives, precision {d['precision']:.3f}, "  # noqa: E731
                 f"query ratio {d['query_ratio']:.4f}")
ready = r["restart_ready_seconds"]
q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")  # noqa: E731
rows = "\n".join(f"| `{k}` | {v} | {r['bad_expected_by_reason'].get(k, 0)} |" for k, v in r["dead_letters_by_reason"].items())
doc = f"""# Reliability: crashes, outages and hostile input

Measured with `make chaos` (= `synapse-stream chaos --report docs/reliability/chaos-report.json`: 20,000 posts,
5 crashes, 30 s outages, 10,000 bad messages) on the 2-core development machine, against the embedded stack
(Tansu broker and Redis, each behind a fault-injecting TCP proxy), one Faust worker (`faust -A stream_app
worker`), 4 partitions, the hashing embedder (the run tests the plumbing, not detection quality; the
end-to-end test with MiniLM shows the stream equals the core), and a replay oracle answering every candidate.
The full report is [reliability/chaos-report.json](reliability/chaos-report.json). CI runs the same code in a
short form (`tests/devstack/test_chaos.py`: 1,500 posts, 2 crashes, 5 s outages, 1,000 bad messages).

```
{chaos_line(r)}
```

## Figures

| what | result |
|---|---|
| crashes survived (`kill -9` at random moments during the replay, restart each time) | {r['crashes']} |
| posts checked (every post accepted by the broker, good posts only) | {r['posts']} plus {len(r.get('outages', {})) * 50} sent around the outages and {sum(1 for _ in range(0, r['bad_messages'], 50))} between the bad messages |
| posts missing from the shards after the run / in two shards | {r['missing']} / {r['posts_in_two_shards']} |
| duplicate post ids on the candidates topic (crashes, hostile input) | {r['duplicate_candidates']} (of {r['candidates']} candidate messages) |
| duplicates written while a broker connection was cut (producer retries, see below) | {r.get('duplicate_candidates_from_producer_retries_in_outages', 0)} |
| verdicts on the labels topic missing from the ledger's history | {r['lost_verdicts']} (of {r['valid_verdicts']} valid verdicts; ledger's latest verdict wrong for {r['ledger_latest_mismatch']}) |
| queried set and confirmed positives equal to the crash-free run | {r['queried_equal_reference']} and {r['positives_equal_reference']}: {fmt(r['stream'])} with crashes, {fmt(r['reference'])} without |
| bad messages tried / on the dead-letter topic / unaccounted | {r['bad_messages']} / {r['dead_letters']} / {r['bad_unaccounted']} |
| worker restarts caused by input or outages | {r['worker_restarts_from_bad_input']} (worker survived both outages: {r['worker_survived_outages']}) |
| worker memory (RSS) before / after the 10,000 bad messages | {r['rss_kb_before_bad'] / 1024:.0f} MiB / {r['rss_kb_after_bad'] / 1024:.0f} MiB |
| restart to "Ready" (process start, model, group join) | median {statistics.median(ready):.1f} s, max {max(ready):.1f} s |
| shard recovery after a restart (snapshot load + replay of the gap to the committed offset), per shard | median {statistics.median(rec):.2f} s, p90 {q(rec, 0.9):.2f} s, max {max(rec):.2f} s over {len(rec)} shard recoveries |
| broker cut off for {r['outages']['broker']['seconds']:.0f} s: processing resumed after it came back | {r['outages']['broker']['resumed_after']} s, worker exited: {r['outages']['broker']['worker_exited']} |
| Redis cut off for {r['outages']['redis']['seconds']:.0f} s (posts and 20 repeated verdicts kept arriving): resumed after | {r['outages']['redis']['resumed_after']} s, worker exited: {r['outages']['redis']['worker_exited']} |
| graceful stop (SIGTERM: snapshot every shard, commit, exit) | exit code {r['graceful_stop']['exit_code']} in {r['graceful_stop']['seconds']} s (bound: 30 s, after which the harness would kill it) |

Dead letters by reason (got / sent):

| reason | on the dead-letter topic | sent |
|---|---|---|
{rows}

## How each guarantee is kept

* **No post lost from the index.** Each partition of `posts` has its own HNSW shard. Shards are snapshotted
  atomically (`SYNAPSE_SNAPSHOT_INTERVAL`, 10 s in this run; on rebalance; on SIGTERM) with the highest
  offset they cover. A worker taking a partition loads the snapshot and, before its agent consumes that
  partition again, replays the posts between the snapshot's offset and the consumer group's committed offset
  from Kafka (re-embedding them). Faust then resumes at the committed offset (at-least-once); re-delivered
  posts are no-ops because the index skips ids it holds. Without a snapshot (a new machine) the whole
  partition is replayed.
* **No post twice to the oracle.** `SADD` on `synapse:<det>:queried` is the claim, done in one Lua call that also
  records the candidate message as *in flight* with the owning worker's id. The runtime awaits the broker's
  acknowledgement of every candidate before removing it from the in-flight hash. Every worker keeps a
  heartbeat key with a 15 s TTL; in-flight candidates of a worker whose heartbeat expired are re-sent by a
  surviving (or restarted) worker only if they are not already on the candidates topic. Candidates found
  while Redis is unreachable wait in an in-process outbox that is filled before any I/O.
* **No verdict lost.** Labels are validated and routed to the partition holding their post; the verdict is
  appended to the history stream and set as the latest in the ledger before the agent's offset can be
  committed. A verdict that made a post positive becomes a confirmed seed by reconciliation from the ledger
  (after every batch and after every shard recovery), so a crash between the two steps loses nothing.
* **Cut broker connections.** A producer whose connection drops after the broker appended a batch but
  before the acknowledgement retries it, and a plain producer then writes the batch twice. On real Kafka
  the worker uses an idempotent producer (`stream_app/transport.py`, `SYNAPSE_PRODUCER_IDEMPOTENCE`,
  on by default: the broker discards such retries). The embedded Tansu broker cannot (its InitProducerId
  fails), so the run counts candidates duplicated inside the outage window apart; crashes alone never
  duplicated a candidate.
* **Outages.** Every Redis and Kafka call of the worker goes through one retry policy: capped exponential
  backoff with jitter (0.5 s doubling to 15 s), forever, logging each retry; the agent simply waits, Faust keeps
  the consumer alive, nothing is committed past the unprocessed messages, and the process never exits.
* **Liveness.** `GET /healthz` is 503 while starting and when the posts consumer has lag (high-water minus
  the last indexed offset) but has not advanced for `SYNAPSE_HEALTH_STALL_SECONDS` (60 s), which catches an
  agent that silently stopped; an idle worker with no lag stays healthy (`tests/worker/test_health.py`).

## Rules for hostile input (documented behaviour, not dead letters)

* Duplicate verdicts: the ledger keeps the latest; both are in the history stream (`synapse:<det>:verdicts`).
* Conflicting verdicts: the latest wins; a positive overturned to negative stops acting as a seed, a negative
  overturned to positive becomes one.
* The same post id twice: the first text is indexed; later copies are ignored.
* A message larger than `SYNAPSE_MAX_MESSAGE_BYTES` (1 MB default; 200 KB in this run) is rejected before parsing
  (`too_large`); the dead letter keeps its first 64 KB, its size and SHA-256, and names its offset. Kafka
  brokers refuse messages above their own limit (`message.max.bytes`, 1 MB by default) at produce time, so
  10 MB posts never reach a worker on a default Kafka.
* Text over `SYNAPSE_MAX_TEXT_CHARS` (20,000) is `text_too_long`; JSON nested deeper than 32 levels is
  `too_deep` (checked before parsing).

## Security

* Redis over TLS with a password works end to end (`tests/worker/test_security.py` makes a self-signed certificate,
  runs a worker against `rediss://` with `requirepass`, and checks a wrong password is refused).
* Kafka SSL and SASL (PLAIN, SCRAM) are settings (`SYNAPSE_BROKER_SECURITY_PROTOCOL`, `_USERNAME`, `_PASSWORD`,
  `_CA_FILE`) passed to Faust and to the worker's own recovery consumers; **they are not tested here**: the
  embedded Tansu broker offers neither.
* Secrets are `SecretStr`: they never appear in reprs, logs or metrics (tested); post texts are not logged at
  info level (tested); `/metrics` and `/healthz` bind to `SYNAPSE_WEB_HOST`, loopback by default (tested).
"""
(ROOT / "docs" / "reliability.md").write_text(doc, encoding="utf-8")
print("wrote docs/reliability.md")
