#!/usr/bin/env python3
"""Turns txmq_bench's JSON into docs/benchmarks.md and the chart's data.

  report.py RESULTS.json OUT.md CHART.dat

Uses the median of the repetitions. Every target is a ratio of two rows of
the same run, because the machines are shared and noisy.
"""
import json
import sys

TARGETS = [
    # (label, numerator, denominator, at least)
    ("kSync, 64 threads vs SQLite one row per transaction",
     "BM_TxmqSend/sync/real_time/threads:64", "BM_SqlitePut/real_time", 20.0),
    ("kSync, 64 threads vs raw LMDB, 64 puts per transaction",
     "BM_TxmqSend/sync/real_time/threads:64", "BM_LmdbPut/batch:64/real_time",
     0.5),
    ("consume (one consumer, 1M messages) vs raw LMDB cursor scan",
     "BM_TxmqConsume/1024", "BM_LmdbScan", 0.3),
    ("transactional send vs plain send, kSync, 1 thread",
     "BM_TxmqTransactionalSend/real_time/threads:1",
     "BM_TxmqSend/sync/real_time/threads:1", 0.5),
    ("transactional send vs plain send, kSync, 16 threads",
     "BM_TxmqTransactionalSend/real_time/threads:16",
     "BM_TxmqSend/sync/real_time/threads:16", 0.5),
    ("transactional send vs plain send, kSync, 64 threads",
     "BM_TxmqTransactionalSend/real_time/threads:64",
     "BM_TxmqSend/sync/real_time/threads:64", 0.5),
    # The key index's cost (a row per keyed message): our own budget.
    ("keyed send (key index row) vs plain send, kAsync, 64 threads",
     "BM_TxmqSend/async_keyed/real_time/threads:64",
     "BM_TxmqSend/async/real_time/threads:64", 0.75),
]
ABSOLUTE = [
    # (label, row, at least items/s)
    ("check-backs per second (100,000 expired, trivial checker)",
     "BM_TxmqCheckBack/iterations:2/real_time", 100000.0),
]
LIMITS = [
    # (label, row, counter, at most, unit)
    ("send-to-receive latency p99, kAsync",
     "BM_TxmqLatency/async/iterations:1/real_time", "p99_us", 200.0, "us"),
    ("delayed messages fire late by, p99",
     "BM_TxmqDelayedFiring/iterations:1/real_time", "late_p99_ms", 10.0, "ms"),
    ("500,000 delayed messages due at once: all delivered within",
     "BM_TxmqDelayedBurst/iterations:1/real_time", "all_in_ms", 2000.0, "ms"),
]
# docs/benchmarks.md from this heading on is not generated: it is kept.
KEPT_FROM = "\n## RPC against Redis Streams and NATS JetStream"
# Rows whose counters (percentiles) get a table of their own.
COUNTER_ROWS = ("BM_TxmqLatency", "BM_TxmqDelayed")


def medians(doc):
    rows = {}
    for b in doc["benchmarks"]:
        if b.get("aggregate_name", "median") != "median":
            continue
        name = b.get("run_name", b["name"])
        rows[name] = b
    return rows


def rate(row):
    return row.get("items_per_second", 0.0)


def human(x):
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def main(results, out_md, out_dat):
    with open(results) as f:
        doc = json.load(f)
    rows = medians(doc)
    ctx = doc["context"]
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines = [
        "# Benchmarks",
        "",
        "Produced by `scripts/dev bench` (bench/run.sh: `build/bench/txmq_bench"
        " --benchmark_repetitions=3`, medians), all in one run so that every"
        " figure is also a ratio. 128-byte messages; kSync sends are fsynced"
        " before they return.",
        "",
        f"Machine: {ctx.get('num_cpus')} x {model} ({ctx.get('mhz_per_cpu')}"
        f" MHz), host `{ctx.get('host_name')}`, {ctx.get('date')}. Data in"
        " `$TXMQ_BENCH_DIR` (default /tmp).",
        "",
        "![throughput against producer threads](benchmarks.png)",
        "",
        "What limits these figures and what was tried: [performance.md]"
        "(performance.md).",
        "",
        "| benchmark | items/s | time per item |",
        "|---|---:|---:|",
    ]
    for name, row in rows.items():
        r = rate(row)
        per = f"{1e9 / r:.0f} ns" if r else "-"
        lines.append(f"| `{name}` | {human(r)} | {per} |")
    lines += ["", "| target | ratio | at least | met |", "|---|---:|---:|---|"]
    for label, num, den, want in TARGETS:
        if num in rows and den in rows and rate(rows[den]) > 0:
            ratio = rate(rows[num]) / rate(rows[den])
            lines.append(f"| {label} | {ratio:.3g}x | {want}x |"
                         f" {'yes' if ratio >= want else 'no'} |")
    for label, row, want in ABSOLUTE:
        if row in rows:
            r = rate(rows[row])
            lines.append(f"| {label} | {human(r)}/s | {human(want)}/s |"
                         f" {'yes' if r >= want else 'no'} |")
    for label, row, counter, most, unit in LIMITS:
        if row in rows and counter in rows[row]:
            v = rows[row][counter]
            lines.append(f"| {label} | {v:.4g} {unit} | at most {most:g} {unit} |"
                         f" {'yes' if v <= most else 'no'} |")
    lines += ["", "Latencies (percentiles as counters of the rows; us ="
              " microseconds, ms = milliseconds):", "",
              "| benchmark | counters |", "|---|---|"]
    for name, row in rows.items():
        if name.startswith(COUNTER_ROWS):
            skip = {"items_per_second", "bytes_per_second"}
            counters = ", ".join(
                f"{k} {row[k]:.4g}" for k in sorted(row)
                if k not in skip and isinstance(row[k], (int, float)) and
                (k.endswith(("_us", "_ms")) or k in ("early", "within_10ms")))
            lines.append(f"| `{name}` | {counters} |")
    # Sections written by hand after the generated part (the RPC comparison
    # of bench/rpc_bench.sh) are kept.
    try:
        with open(out_md) as f:
            old = f.read()
        at = old.find(KEPT_FROM)
        if at >= 0:
            lines += ["", old[at + 1:].rstrip("\n")]
    except OSError:
        pass
    with open(out_md, "w") as f:
        f.write("\n".join(lines) + "\n")

    # Chart data: threads, sync, async, and the baselines as flat lines.
    base = {k: rate(rows[v]) for k, v in {
        "sqlite": "BM_SqlitePut/real_time",
        "lmdb1": "BM_LmdbPut/batch:1/real_time",
        "lmdb32": "BM_LmdbPut/batch:32/real_time",
        "lmdb64": "BM_LmdbPut/batch:64/real_time"}.items() if v in rows}
    with open(out_dat, "w") as f:
        f.write("# threads txmq_sync txmq_async sqlite lmdb_batch1"
                " lmdb_batch64 lmdb_batch32\n")
        for t in (1, 4, 16, 64):
            s = rate(rows.get(f"BM_TxmqSend/sync/real_time/threads:{t}", {}))
            a = rate(rows.get(f"BM_TxmqSend/async/real_time/threads:{t}", {}))
            f.write(f"{t} {s} {a} {base.get('sqlite', 0)} {base.get('lmdb1', 0)}"
                    f" {base.get('lmdb64', 0)} {base.get('lmdb32', 0)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
