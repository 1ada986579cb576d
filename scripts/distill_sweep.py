#!/usr/bin/env python3
"""Distillation sweep (issue 17): `slimnet distill ... --json` over seeds and a grid of
temperature, alpha, target and transfer set, for several students, each beside its
hard-label twin (same initialisation, epochs, optimizer and seed).

Every run appends its JSON report (plus the config name) to RESULTS (a .jsonl file), and a
run already there is skipped, so the sweep can be stopped and resumed. The twin of a
(student, epochs, transfer, seed) is trained once, by the first distillation run of that
group (`--twin`), and reused for the others: it does not depend on the teacher, temperature
or alpha. The teacher's logits are cached in one file per teacher (`--teacher-cache`), so
each run pays only its student's training.

    scripts/distill_sweep.py run   [--bin slimnet] [--out DIR] [--only S1,S2] [--threads 1]
    scripts/distill_sweep.py table [--out DIR]      # markdown table of DIR/results.jsonl

Chains (teacher -> assistant -> student) use the distilled lenet300 of the same seed as the
teacher of the 784-30-10 student: `slimnet distill --assistant lenet300` does the same in
one command, this reuses the lenet300 run of the sweep instead of training it again.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TEACHER = "/work/zoo/cnn-teacher.model"
SEEDS = [1, 2, 3]
MLP = "mlp:784-30-10"


def grid():
    """(name, student, epochs, transfer, extra args, seed), in the order run: the most telling
    configurations over all seeds first, so a sweep cut short still has whole rows; the twin
    of each group is trained by its first run."""
    soft = lambda t, a: ["--temperature", str(t), "--alpha", str(a)]
    rows = [
        ("T1 a0.5", MLP, 20, "train", soft(1, 0.5)),
        ("T1 a0.5", "lenet300", 20, "train", soft(1, 0.5)),
        ("chain lenet300 T1 a0.5", MLP, 20, "train", soft(1, 0.5) + ["@chain"]),
        ("T1 a0.3", MLP, 20, "train", soft(1, 0.3)),
        ("T2 a0.5", MLP, 20, "train", soft(2, 0.5)),
        ("T4 a0.9", MLP, 20, "train", soft(4, 0.9)),
        ("logits a0.5", MLP, 20, "train", ["--logits", "--alpha", "0.5"]),
        ("anneal a0.9->0.1 T4->1", MLP, 20, "train",
         soft(4, 0.9) + ["--alpha-end", "0.1", "--temperature-end", "1"]),
        ("T1 a0.5", MLP, 40, "train", soft(1, 0.5)),
        ("T4 a0.9", "lenet300", 20, "train", soft(4, 0.9)),
        ("T1 a0.5", "cnn:8-16", 5, "train", soft(1, 0.5)),
        ("T1 a0.5", MLP, 20, "augmented", soft(1, 0.5)),
        ("T4 a0.9", "cnn:8-16", 5, "train", soft(4, 0.9)),
        # session 8: the small CNN over all seeds, and the augmented and unlabeled transfer
        # sets for every student
        ("T1 a0.5", "cnn:8-16", 5, "augmented", soft(1, 0.5)),
        ("unlabeled T1", "cnn:8-16", 5, "unlabeled", ["--temperature", "1"]),
        ("unlabeled T1", MLP, 20, "unlabeled", ["--temperature", "1"]),
        ("T2 a0.5", "cnn:8-16", 5, "train", soft(2, 0.5)),
        ("unlabeled T1", "lenet300", 20, "unlabeled", ["--temperature", "1"]),
        ("T1 a0.5", "lenet300", 20, "augmented", soft(1, 0.5)),
    ]
    return [r + (s,) for r in rows for s in SEEDS]


def key(name, student, epochs, transfer, seed):
    return f"{student}|{epochs}|{transfer}|{name}|{seed}"


def load(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    return rows


def run(args):
    os.makedirs(args.out, exist_ok=True)
    results = os.path.join(args.out, "results.jsonl")
    done = {r["key"] for r in load(results)}
    twins = {(r["student"], r["epochs"], r["transfer"], r["seed"])
             for r in load(results) if r.get("twin_accuracy") is not None}
    for name, student, epochs, transfer, extra, seed in grid():
        k = key(name, student, epochs, transfer, seed)
        if k in done or (args.only and not any(o in k for o in args.only.split(","))):
            continue
        teacher, extra = TEACHER, list(extra)
        if "@chain" in extra:
            extra.remove("@chain")
            teacher = os.path.join(args.out, f"lenet300-20-train-T1 a0.5-{seed}.model")
            if not os.path.exists(teacher):
                print(f"skip {k}: no assistant {teacher}", file=sys.stderr)
                continue
        tag = os.path.basename(teacher).replace(" ", "_")
        out = os.path.join(
            args.out, f"{student.replace(':', '_')}-{epochs}-{transfer}-{name}-{seed}.model")
        cmd = [args.bin, "--threads", str(args.threads), "-q", "distill", "--teacher", teacher,
               "--student", student, "-o", out, "--epochs", str(epochs), "--transfer", transfer,
               "--seed", str(seed), "--json"] + extra
        if transfer != "augmented":
            cmd += ["--teacher-cache", os.path.join(args.out, f"{tag}.logits")]
        twin_key = (student, epochs, transfer, seed)
        if twin_key not in twins:
            cmd.append("--twin")
        if os.path.exists(out):
            os.remove(out)
        t0 = time.time()
        print(" ".join(cmd), file=sys.stderr, flush=True)
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"FAILED {k}: {p.stderr.strip()[-400:]}", file=sys.stderr)
            continue
        r = json.loads(p.stdout)
        r.update(key=k, name=name, seed=seed, seconds=round(time.time() - t0, 1),
                 command=" ".join(cmd))
        if r.get("twin_accuracy") is not None:
            twins.add(twin_key)
        with open(results, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"{k}: {100 * r['accuracy']:.2f}% twin {r.get('twin_accuracy')}"
              f" ({r['seconds']} s)", file=sys.stderr, flush=True)


def stats(xs):
    m = statistics.mean(xs)
    return m, (max(xs) - min(xs)) if len(xs) > 1 else 0.0


def table(args):
    rows = load(os.path.join(args.out, "results.jsonl"))
    twin = {(r["student"], r["epochs"], r["transfer"], r["seed"]): r["twin_accuracy"]
            for r in rows if r.get("twin_accuracy") is not None}
    groups = {}
    for r in rows:
        g = (r["student"], r["epochs"], r["transfer"], r["name"])
        groups.setdefault(g, []).append(r)
    print("| student | epochs | transfer | config | seeds | distilled mean (spread) | "
          "twin mean (spread) | mean gain | wins (same seed) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for g, rs in groups.items():
        rs.sort(key=lambda r: r["seed"])
        acc = [100 * r["accuracy"] for r in rs]
        tw = [100 * twin[(g[0], g[1], g[2], r["seed"])] for r in rs
              if (g[0], g[1], g[2], r["seed"]) in twin]
        if len(tw) != len(acc):
            tw = []
        m, sp = stats(acc)
        line = f"| {g[0]} | {g[1]} | {g[2]} | {g[3]} | {','.join(str(r['seed']) for r in rs)} | " \
               f"{m:.2f} ({sp:.2f}) | "
        if tw:
            tm, tsp = stats(tw)
            wins = sum(a > t for a, t in zip(acc, tw))
            line += f"{tm:.2f} ({tsp:.2f}) | {m - tm:+.2f} | {wins}/{len(acc)} |"
        else:
            line += "- | - | - |"
        print(line)
    print("\nspread = max - min over the seeds; per-seed accuracies:\n")
    for g, rs in groups.items():
        per = ", ".join(f"s{r['seed']} {100 * r['accuracy']:.2f}"
                        + (f"/{100 * twin[(g[0], g[1], g[2], r['seed'])]:.2f}"
                           if (g[0], g[1], g[2], r["seed"]) in twin else "")
                        for r in rs)
        extra = ""
        chain = [r.get("teacher_accuracy") for r in rs if "chain" in g[3]]
        if chain:
            extra = " (assistants " + ", ".join(f"{100 * a:.2f}" for a in chain) + ")"
        print(f"- {g[0]} {g[1]} ep {g[2]} {g[3]}: {per}{extra}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["run", "table"])
    ap.add_argument("--bin", default="slimnet")
    ap.add_argument("--out", default="distill-sweep")
    ap.add_argument("--only", default="",
                    help="run only the keys containing one of these comma-separated substrings")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    run(args) if args.what == "run" else table(args)


if __name__ == "__main__":
    main()
