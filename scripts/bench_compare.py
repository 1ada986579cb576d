#!/usr/bin/env python3
"""Compare two `cargo xtask bench` reports (report.json), row by row.

    python3 scripts/bench_compare.py first/report.json second/report.json [--markdown]

For every (model, row, batch, threads) present in both runs it prints the second run's
figure over the first's: batch-1 median latency and batch-256 images/s, and says whether the
file bytes and the accuracy are identical (they must be: the representations are cached and
the evaluation is deterministic). The summary gives the median and the largest deviation of
the timing ratios, per batch size and per runtime, so that "twice within noise" is a number
rather than an impression. Exit status 1 if a row's bytes or accuracy differ.
"""
import argparse
import json
import statistics
import sys


def key_of(row):
    name = row["representation"] if row["runtime"] == "slimnet" else row["runtime"]
    return (row["model"], name)


def load(path):
    with open(path) as f:
        report = json.load(f)
    rows = {}
    for row in report["rows"]:
        rows[key_of(row)] = row
    return report.get("context", {}), rows


def figure(run):
    # Batch 1 is a latency (lower is better), larger batches a throughput.
    return ("median_us", run["median_us"]) if run["batch"] == 1 else ("images_per_s", run["images_per_s"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--markdown", action="store_true", help="print the per-row table as markdown")
    a = ap.parse_args()
    ctx1, rows1 = load(a.first)
    ctx2, rows2 = load(a.second)
    for label, ctx in (("first", ctx1), ("second", ctx2)):
        keys = ("date", "git", "cpu", "threads")
        print(f"{label}: " + ", ".join(f"{k} {ctx.get(k)}" for k in keys if k in ctx))
    mismatched = []
    ratios = {}
    lines = []
    for key in rows1:
        if key not in rows2:
            print(f"only in the first run: {key[0]} {key[1]}")
            continue
        r1, r2 = rows1[key], rows2[key]
        same_bytes = r1.get("file_bytes") == r2.get("file_bytes")
        same_acc = r1.get("accuracy") == r2.get("accuracy")
        if not (same_bytes and same_acc):
            mismatched.append(key)
        runs2 = {(r["batch"], r["threads"]): r for r in r2.get("runs", [])}
        for run1 in r1.get("runs", []):
            run2 = runs2.get((run1["batch"], run1["threads"]))
            if run2 is None:
                continue
            what, v1 = figure(run1)
            _, v2 = figure(run2)
            if not v1:
                continue
            ratio = v2 / v1
            runtime = "slimnet" if r1["runtime"] == "slimnet" else "peer"
            ratios.setdefault((run1["batch"], runtime), []).append(ratio)
            lines.append((key[0], key[1], run1["batch"], run1["threads"], what, v1, v2, ratio,
                          "same" if same_bytes and same_acc else "DIFFERENT"))
    for key in rows2:
        if key not in rows1:
            print(f"only in the second run: {key[0]} {key[1]}")
    if a.markdown:
        print("| model | row | batch | threads | figure | first | second | second / first | bytes, accuracy |")
        print("|---|---|---|---|---|---|---|---|---|")
        for m, rep, b, t, what, v1, v2, ratio, same in lines:
            print(f"| {m} | {rep} | {b} | {t} | {what} | {v1:.1f} | {v2:.1f} | {ratio:.3f} | {same} |")
    else:
        for m, rep, b, t, what, v1, v2, ratio, same in lines:
            print(f"{m:12} {rep:28} b{b:<4} t{t} {what:13} {v1:12.1f} {v2:12.1f} {ratio:7.3f} {same}")
    print()
    print("| batch | rows | median second/first | smallest | largest | within 10% | within 20% |")
    print("|---|---|---|---|---|---|---|")
    for (batch, runtime), rs in sorted(ratios.items()):
        within10 = sum(1 for r in rs if abs(r - 1) <= 0.10)
        within20 = sum(1 for r in rs if abs(r - 1) <= 0.20)
        print(f"| {batch} ({runtime}) | {len(rs)} | {statistics.median(rs):.3f} | {min(rs):.3f} | "
              f"{max(rs):.3f} | {within10}/{len(rs)} | {within20}/{len(rs)} |")
    if mismatched:
        print("bytes or accuracy differ between the runs: "
              + ", ".join(f"{m} {r}" for m, r in mismatched))
        sys.exit(1)


if __name__ == "__main__":
    main()
