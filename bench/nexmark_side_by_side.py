#!/usr/bin/env python3
"""Nexmark side by side on this machine: Flink SQL, Sluice and hand-written Rust.

All three read the same NDJSON file written by `sluice nexmark gen`:

* Flink: `bench/flink/nexmark_flink.py` (PyPI's apache-flink, local MiniCluster,
  streaming mode, blackhole sink), a fresh JVM per run; events/s is over the
  job's own runtime, JVM and client start are reported separately.
* Sluice: `sluice bench nexmark --source FILE`, the mini-cluster into a
  discarding sink, a fresh process per query.
* Hand-written: `nexmark-handwritten`, one thread, no framework: the limit
  the engine's overhead is measured against.

--shapes runs the whole table on several shapes of data (SHAPES below): the
generator's defaults, 10x and 100x the auctions and people in flight, and a
uniform one with no hot auction, seller or bidder.

Every figure is the min and median of --runs runs, each in a fresh process.
The table gives events per wall-clock second and per CPU-second (user +
system of the engine's processes, the JVM included), peak RSS, and the ratios
Sluice/Flink and Sluice/hand-written; the latter is paired: Sluice and the
hand-written loop run in turn, and the ratio is the median of the ratios of
neighbouring runs. Raw lines go to --log.
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALL = "q0,q1,q2,q3,q4,q5,q7,q8,q9,q11,q12,q13,q14,q15,q16,q17,q18,q19,q20,q21,q22"
# `sluice nexmark gen` options of each shape of data.
SHAPES = {
    "default": [],
    "keys-10x": ["--in-flight-auctions", "1000", "--active-people", "10000"],
    "keys-100x": ["--in-flight-auctions", "10000", "--active-people", "100000"],
    "uniform": ["--hot-auction-ratio", "1", "--hot-seller-ratio", "1", "--hot-bidder-ratio", "1"],
}


def run(cmd, log):
    """Runs a command, echoing and logging its output; returns the output lines."""
    print("$ " + " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    log.write("$ " + " ".join(str(c) for c in cmd) + "\n")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        log.write(line)
        lines.append(line.rstrip("\n"))
    if proc.wait() != 0:
        sys.exit(f"command failed with exit code {proc.returncode}: {cmd}")
    log.flush()
    return lines


def records(lines, engine):
    """The key=value fields of the per-run lines an engine printed."""
    out = []
    for line in lines:
        words = line.split()
        if not words or words[0] != engine or (len(words) > 1 and words[1] == "summary"):
            continue
        fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        if "run" in fields:
            out.append(fields)
    return out


def min_median(values):
    values = sorted(values)
    return (values[0], statistics.median_low(values)) if values else (None, None)


def fmt_rate(v):
    return "-" if v is None else f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}K"


def fmt_ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.1f}x"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000, help="events in the generated file")
    parser.add_argument("--file", type=Path, help="NDJSON file (default: bench/data/nexmark-<shape>-<events>.ndjson, generated if missing)")
    parser.add_argument("--shapes", default="default", help=f"comma-separated shapes of data: {', '.join(SHAPES)} (default: default)")
    parser.add_argument("--queries", default=ALL, help="comma-separated queries (default: all)")
    parser.add_argument("--parallelism", default="1,2", help="comma-separated parallelisms (default: 1,2)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-flink", action="store_true", help="do not run Flink (CI)")
    parser.add_argument("--log", type=Path, default=ROOT / "bench" / "data" / "side-by-side.log")
    parser.add_argument("--debug", action="store_true", help="debug builds: only to check that the benchmark works (CI)")
    args = parser.parse_args()
    release = [] if args.debug else ["--release"]
    bin_dir = ROOT / "target" / ("debug" if args.debug else "release")
    queries = args.queries.split(",")
    parallelisms = [int(p) for p in args.parallelism.split(",")]
    shapes = args.shapes.split(",")
    for shape in shapes:
        if shape not in SHAPES:
            sys.exit(f"unknown shape {shape!r}: expected one of {', '.join(SHAPES)}")
    if args.file and len(shapes) > 1:
        sys.exit("--file gives one input: use it with one shape")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "w") as log:
        run(["cargo", "build", *release, "-p", "sluice-cli", "-p", "nexmark-handwritten"], log)
        for shape in shapes:
            path = args.file or ROOT / "bench" / "data" / f"nexmark-{shape}-{args.events}.ndjson"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                run([bin_dir / "sluice", "nexmark", "gen", "--events", str(args.events), "--out", path,
                     *SHAPES[shape]], log)
            table(args, shape, path, queries, parallelisms, bin_dir, log)


def table(args, shape, path, queries, parallelisms, bin_dir, log):
    """Runs every engine on one input and prints its table."""
    events = sum(1 for _ in open(path, "rb"))
    print(f"input: {path}, {events} events, {path.stat().st_size / 2**20:.0f} MiB", flush=True)

    results = {}  # (engine, query, parallelism) -> per-run fields
    # Sluice and the hand-written loop run in turn, a fresh process per run, so
    # that each Sluice run has a hand-written run next to it: the host's speed
    # drifts by more than the effects measured, and a ratio of two runs taken
    # minutes apart would show the drift.
    for q in queries:
        for _ in range(args.runs):
            lines = run([bin_dir / "nexmark-handwritten", "--query", q, "--input", path, "--runs", "1"], log)
            results.setdefault(("handwritten", q, 1), []).extend(records(lines, "handwritten"))
            for p in parallelisms:
                lines = run([bin_dir / "sluice", "bench", "nexmark", "--query", q, "--source", path,
                             "--parallelism", str(p), "--runs", "1"], log)
                results.setdefault(("sluice", q, p), []).extend(records(lines, "sluice"))
    if not args.skip_flink:
        run(["bash", ROOT / "bench" / "flink" / "setup.sh"], log)
        python = ROOT / "bench" / ".venv" / "bin" / "python"
        lines = run([python, ROOT / "bench" / "flink" / "nexmark_flink.py", "--input", path,
                     "--queries", ",".join(queries), "--parallelism", ",".join(map(str, parallelisms)),
                     "--runs", str(args.runs), "--events", str(events)], log)
        for fields in records(lines, "flink"):
            results.setdefault(("flink", fields["query"], int(fields["parallelism"])), []).append(fields)

    def figure(engine, q, p, key):
        runs = results.get((engine, q, p), [])
        return min_median([float(r[key]) for r in runs if r.get(key) not in (None, "-")])

    def paired_ratio(q, p):
        """Median over runs of Sluice's events/s over the hand-written run next to it."""
        pairs = zip(results.get(("sluice", q, p), []), results.get(("handwritten", q, 1), []))
        ratios = sorted(float(s["events_per_second"]) / float(h["events_per_second"]) for s, h in pairs)
        return f"{statistics.median(ratios):.2f}x" if ratios else "-"

    def per_cpu(engine, q, p):
        runs = results.get((engine, q, p), [])
        return min_median([float(r["events"]) / float(r["cpu_seconds"]) for r in runs
                           if float(r.get("cpu_seconds", 0) or 0) > 0])

    header = ["query", "p", "flink ev/s", "flink ev/cpu-s", "flink MiB", "sluice ev/s", "sluice ev/cpu-s",
              "sluice MiB", "hand ev/s", "sluice/flink", "per cpu", "sluice/hand", "flink/sluice MiB"]
    rows = []
    for p in parallelisms:
        for q in queries:
            f_rate = figure("flink", q, p, "events_per_second")
            f_cpu = per_cpu("flink", q, p)
            f_mem = figure("flink", q, p, "peak_rss_mib")
            s_rate = figure("sluice", q, p, "events_per_second")
            s_cpu = per_cpu("sluice", q, p)
            s_mem = figure("sluice", q, p, "peak_rss_mib")
            h_rate = figure("handwritten", q, 1, "events_per_second")
            rows.append([q, str(p),
                         f"{fmt_rate(f_rate[0])} / {fmt_rate(f_rate[1])}", fmt_rate(f_cpu[1]),
                         "-" if f_mem[1] is None else f"{f_mem[1]:.0f}",
                         f"{fmt_rate(s_rate[0])} / {fmt_rate(s_rate[1])}", fmt_rate(s_cpu[1]),
                         "-" if s_mem[1] is None else f"{s_mem[1]:.0f}",
                         f"{fmt_rate(h_rate[0])} / {fmt_rate(h_rate[1])}",
                         fmt_ratio(s_rate[1], f_rate[1]), fmt_ratio(s_cpu[1], f_cpu[1]),
                         paired_ratio(q, p), fmt_ratio(f_mem[1], s_mem[1])])
    print()
    print(f"Nexmark side by side, shape {shape}: {events} events from {path.name}; events/s as min / median of {args.runs} runs;"
          " per cpu and MiB are medians; sluice/hand is the median of the ratios of runs taken in turn")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))



if __name__ == "__main__":
    main()
