#!/usr/bin/env python3
"""Nexmark on Flink SQL: the Flink side of Sluice's side-by-side benchmark.

What it measures
----------------
Each Nexmark query (queries/qN.sql, the SQL of the Flink Nexmark suite) runs
as one Flink SQL job in streaming mode on Flink's local MiniCluster, embedded
in the JVM that PyFlink starts (its py4j gateway). The source is the
`filesystem` connector with the `json` format over an NDJSON file of Nexmark
events (`sluice nexmark gen`, format in docs/NEXMARK.md); the sink is
`blackhole`. Event-time windows fire when the file ends (the bounded
source then emits the final watermark); q12's processing-time windows do not:
Flink drops the windows still open when a bounded input ends, so q12 emits
nothing for a job shorter than its 10 s window. The table configuration is
the suite's: mini-batch on (2 s, 50,000 rows), split distinct aggregation,
heap state backend, no checkpointing.

The input may also be a directory of such files. Flink's file source, like
Sluice's, reads each file as one split: a single file is read by one source
subtask at any parallelism (the operators after the first shuffle do run in
parallel).

Every (query, parallelism, run) is a fresh Python process that starts a
fresh JVM, so JIT warm-up, heap growth and peak memory belong to that one
query. For each run this prints one line:

    flink query=q5 parallelism=1 run=1 events=1000000 job_seconds=12.345 \
events_per_second=81000 cpu_seconds=20.1 peak_rss_mib=850 startup_seconds=4.2

(on one line), where

- job_seconds: the job's net runtime as Flink reports it
  (JobExecutionResult.getNetRuntime(): from the job's submission to the
  MiniCluster's dispatcher until it finished, so it includes scheduling and
  deploying the tasks, but not the JVM start, the SQL planning or the
  MiniCluster start);
- events_per_second: events / job_seconds, where events is --events (the
  number of events in the file: persons, auctions and bids);
- cpu_seconds: user + system CPU time of the java process (all its threads,
  including JIT compiler and GC) over the job's net runtime: sampled from
  /proc/<pid>/stat every 10 ms, read at the end of the job and at the end
  minus the net runtime (planning and the MiniCluster start excluded);
- peak_rss_mib: the java process's VmHWM (/proc/<pid>/status) after the job,
  i.e. the peak resident memory of the whole JVM over its life (JVM start,
  planning and the job);
- startup_seconds: from spawning the run's Python process until the INSERT
  job was submitted: Python and PyFlink imports, the JVM start, the
  TableEnvironment, the DDL, and planning and submitting the job.

Then a summary table gives, per query and parallelism, the min and median
events/s over the runs.

Usage
-----
    bench/flink/setup.sh                     # once: bench/.venv with PyFlink
    bench/.venv/bin/python bench/flink/nexmark_flink.py \\
        --input events.ndjson --events 1000000 --queries all \\
        --parallelism 1,2 --runs 3

`--sink print` (for checking, not for measuring) swaps the blackhole sinks
for print sinks and counts the rows each query emits; `--output-dir DIR`
also keeps them, one file per run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUERY_DIR = HERE / "queries"
DDL_FILE = QUERY_DIR / "ddl.sql"

ALL_QUERIES = [
    "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q11", "q12",
    "q13", "q14", "q15", "q16", "q17", "q18", "q19", "q20", "q21", "q22",
]

# The Nexmark suite's table configuration (nexmark-flink conf/config.yaml),
# less what only matters on a cluster. Heap state backend, no checkpointing
# (execution.checkpointing.interval unset).
TABLE_CONFIG = {
    "table.exec.mini-batch.enabled": "true",
    "table.exec.mini-batch.allow-latency": "2 s",
    "table.exec.mini-batch.size": "50000",
    "table.optimizer.distinct-agg.split.enabled": "true",
    "state.backend.type": "hashmap",
}

SIDE_INPUT_KEYS = 10_000

RESULT_PREFIX = "NEXMARK_FLINK_RESULT "
# A row of the print sink: "+I[...]", with "<subtask>> " before it when the
# sink runs with parallelism > 1.
PRINT_ROW = re.compile(r"^(?:\d+> )?([+-][IUD])\[")


# --------------------------------------------------------------------------
# /proc helpers


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # Fields after the command name, which is in parentheses and may hold
    # spaces: state is field 3, utime field 14, stime field 15.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / clock_ticks()


def proc_vm_hwm_mib(pid: int) -> float:
    """Peak resident set size (VmHWM) of process `pid` in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def processes():
    """(pid, command name, fields after the name) of every process in /proc/<pid>/stat."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        yield int(entry), stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def java_children(parent: int) -> list[int]:
    """Pids of the `java` processes whose parent is `parent`."""
    return [pid for pid, comm, fields in processes() if comm == "java" and int(fields[1]) == parent]


class CpuSampler:
    """Samples a process's CPU time every 10 ms in a thread, so that the CPU
    time at an instant known only afterwards (the job's start) can be read
    off by interpolation. /proc counts CPU time in 10 ms ticks anyway."""

    def __init__(self, pid: int, interval: float = 0.01):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), proc_cpu_seconds(self.pid)))
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        self._thread.start()
        while not self.samples:
            time.sleep(0.001)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_at(self, t: float) -> float:
        samples = self.samples
        if t <= samples[0][0]:
            return samples[0][1]
        for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
            if t0 <= t <= t1:
                return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
        return samples[-1][1]


def process_group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group `pgid`."""
    return [pid for pid, _, fields in processes() if int(fields[2]) == pgid and fields[0] != "Z"]


def end_process_group(pgid: int, grace: float = 10.0) -> None:
    """Waits up to `grace` seconds for the run's process group (its Python
    process and JVM, started by this script) to exit, then kills what is
    left and waits until it is gone."""
    deadline = time.monotonic() + grace
    while process_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while process_group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)


# --------------------------------------------------------------------------
# SQL files


def sql_statements(text: str) -> list[str]:
    """Splits a SQL file into statements: drops `--` comment lines, splits on
    `;` at the end of a line (the queries have no `;` inside literals)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    statements, current = [], []
    for line in lines:
        current.append(line)
        if line.rstrip().endswith(";"):
            statement = "\n".join(current).strip().rstrip(";").strip()
            if statement:
                statements.append(statement)
            current = []
    rest = "\n".join(current).strip()
    if rest:
        statements.append(rest)
    return statements


def query_statements(query: str, input_path: str, side_input_path: str, sink: str) -> list[str]:
    """The DDL and the query's statements, ending with its INSERT."""
    ddl = DDL_FILE.read_text().replace("__INPUT_PATH__", input_path)
    text = (QUERY_DIR / f"{query}.sql").read_text()
    text = text.replace("__SIDE_INPUT_PATH__", side_input_path)
    if sink != "blackhole":
        text = re.sub(r"'connector'\s*=\s*'blackhole'", f"'connector' = '{sink}'", text)
    statements = sql_statements(ddl) + sql_statements(text)
    if not statements[-1].upper().startswith("INSERT"):
        raise ValueError(f"{query}.sql must end with its INSERT statement")
    return statements


# --------------------------------------------------------------------------
# Worker: one run in this (fresh) process and its JVM.


def run_worker(spec: dict) -> None:
    t_spawn = spec["t_spawn"]
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    config = Configuration()
    config.set_string("parallelism.default", str(spec["parallelism"]))
    for key, value in TABLE_CONFIG.items():
        config.set_string(key, value)
    settings = (EnvironmentSettings.new_instance().in_streaming_mode()
                .with_configuration(config).build())
    t_env = TableEnvironment.create(settings)  # starts the JVM
    t_jvm = time.monotonic()

    javas = java_children(os.getpid())
    if len(javas) != 1:
        raise RuntimeError(f"expected one java child process, found {javas}")
    java = javas[0]

    statements = query_statements(spec["query"], spec["input"], spec["side_input"], spec["sink"])
    for statement in statements[:-1]:
        t_env.execute_sql(statement)
    t_ddl = time.monotonic()

    sampler = CpuSampler(java)
    sampler.start()
    # Plans the INSERT, starts the MiniCluster and submits the job; returns
    # once the job is submitted (it may be running already).
    result = t_env.execute_sql(statements[-1])
    t_submitted = time.monotonic()
    job_client = result.get_job_client()
    execution = job_client.get_job_execution_result().result()  # waits for the end
    t_done = time.monotonic()
    cpu_end = proc_cpu_seconds(java)
    sampler.stop()
    peak_rss = proc_vm_hwm_mib(java)
    net_runtime_ms = execution.get_net_runtime()
    # The job ran for net_runtime_ms up to (just before) t_done: its CPU time
    # is what the JVM used since then, planning and MiniCluster start
    # excluded.
    cpu_start = sampler.cpu_at(t_done - net_runtime_ms / 1000)

    out = {
        "java_pid": java,
        "net_runtime_ms": net_runtime_ms,
        "cpu_seconds": cpu_end - cpu_start,
        "peak_rss_mib": peak_rss,
        "startup_seconds": t_submitted - t_spawn,
        "jvm_start_seconds": t_jvm - t_spawn,
        "ddl_seconds": t_ddl - t_jvm,
        "plan_submit_seconds": t_submitted - t_ddl,
        "wall_job_seconds": t_done - t_submitted,
    }
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(out), flush=True)


# --------------------------------------------------------------------------
# Driver


def parse_queries(value: str) -> list[str]:
    if value.strip().lower() == "all":
        return list(ALL_QUERIES)
    queries = [q.strip().lower() for q in value.split(",") if q.strip()]
    unknown = [q for q in queries if q not in ALL_QUERIES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown queries {unknown}; known: {','.join(ALL_QUERIES)} or all")
    return queries


def parse_parallelism(value: str) -> list[int]:
    try:
        values = [int(p) for p in value.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad parallelism list {value!r}") from None
    if not values or any(p < 1 for p in values):
        raise argparse.ArgumentTypeError(f"bad parallelism list {value!r}")
    return values


def count_lines(path: Path) -> int:
    """Lines of a file, or of the files in a directory (as Flink reads it:
    files whose names start with '.' or '_' are skipped)."""
    if path.is_dir():
        return sum(count_lines(p) for p in sorted(path.rglob("*"))
                   if p.is_file() and not p.name.startswith((".", "_")))
    count = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def write_side_input(path: Path) -> None:
    """q13's side input: `<key>,nexmark-side-<key>` for every key."""
    with open(path, "w") as f:
        for key in range(SIDE_INPUT_KEYS):
            f.write(f"{key},nexmark-side-{key}\n")


class RunFailed(Exception):
    pass


def run_once(args, query: str, parallelism: int, run: int, work: Path) -> dict:
    """Runs one (query, parallelism, run) in a fresh Python process + JVM."""
    name = f"{query}-p{parallelism}-r{run}"
    log_dir = work / name
    log_dir.mkdir()
    spec = {
        "query": query,
        "parallelism": parallelism,
        "input": str(args.input.resolve()),
        "side_input": str(work / "side_input.csv"),
        "sink": args.sink,
        "t_spawn": time.monotonic(),
    }
    env = dict(os.environ)
    env["FLINK_LOG_DIR"] = str(log_dir)  # the JVM's log file goes here
    if args.jvm_args:
        env["JVM_ARGS"] = args.jvm_args
    stderr_path = log_dir / "worker.stderr"
    rows_file = None
    if args.output_dir:
        rows_file = open(args.output_dir / f"{name}.txt", "w")
    with open(stderr_path, "w") as stderr:
        # A session of its own, so that a timeout can end the worker and its
        # JVM together.
        worker = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            env=env, text=True, start_new_session=True)
        result, counts, samples = None, {}, []

        def read_stdout():
            # The JVM shares the worker's stdout: print-sink rows come here.
            nonlocal result
            for line in worker.stdout:
                if line.startswith(RESULT_PREFIX):
                    result = json.loads(line[len(RESULT_PREFIX):])
                    continue
                match = PRINT_ROW.match(line)
                if match:
                    counts[match.group(1)] = counts.get(match.group(1), 0) + 1
                    if len(samples) < 3:
                        samples.append(line.rstrip("\n"))
                    if rows_file:
                        rows_file.write(line)
                else:
                    stderr.write(line)

        reader = threading.Thread(target=read_stdout, daemon=True)
        reader.start()
        try:
            worker.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            end_process_group(worker.pid, grace=0)
            worker.wait()
            reader.join()
            raise RunFailed(f"{name}: timed out after {args.timeout} s; logs in {log_dir}")
        except BaseException:
            end_process_group(worker.pid, grace=0)
            worker.wait()
            raise
        reader.join()
    if rows_file:
        rows_file.close()
    # The JVM exits with its Python process; make sure of it before the next
    # run starts.
    end_process_group(worker.pid)
    if worker.returncode != 0 or result is None:
        tail = stderr_path.read_text().splitlines()
        tail = [line for line in tail if not line.lstrip().startswith("at ")][-25:]
        raise RunFailed(f"{name}: worker exited with {worker.returncode}; logs in {log_dir}\n"
                        + "\n".join(tail))
    result["rows"] = counts
    result["samples"] = samples
    return result


def format_line(query, parallelism, run, events, r) -> str:
    job_seconds = r["net_runtime_ms"] / 1000
    eps = events / job_seconds if job_seconds > 0 else float("inf")
    return (f"flink query={query} parallelism={parallelism} run={run} events={events} "
            f"job_seconds={job_seconds:.3f} events_per_second={eps:.0f} "
            f"cpu_seconds={r['cpu_seconds']:.2f} peak_rss_mib={r['peak_rss_mib']:.0f} "
            f"startup_seconds={r['startup_seconds']:.2f}")


def print_summary(results: dict, runs: int) -> None:
    print()
    print(f"Flink Nexmark summary (events/s over {runs} run(s) per row; "
          "job time is Flink's net job runtime)")
    header = (f"{'query':<6} {'par':>3} {'events/s min':>13} {'events/s median':>16} "
              f"{'job s median':>12} {'cpu s median':>12} {'peak RSS MiB max':>16} "
              f"{'startup s median':>16}")
    print(header)
    print("-" * len(header))
    for (query, parallelism), rs in results.items():
        if not rs:
            print(f"{query:<6} {parallelism:>3} {'failed':>13}")
            continue
        eps = [r["events_per_second"] for r in rs]
        print(f"{query:<6} {parallelism:>3} {min(eps):>13,.0f} {statistics.median(eps):>16,.0f} "
              f"{statistics.median(r['job_seconds'] for r in rs):>12.2f} "
              f"{statistics.median(r['cpu_seconds'] for r in rs):>12.2f} "
              f"{max(r['peak_rss_mib'] for r in rs):>16.0f} "
              f"{statistics.median(r['startup_seconds'] for r in rs):>16.2f}")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        run_worker(json.loads(sys.argv[2]))
        return 0

    parser = argparse.ArgumentParser(
        description="Run Nexmark queries on Flink SQL (local MiniCluster) over an NDJSON file.")
    parser.add_argument("--input", type=Path, required=True,
                        help="NDJSON file (or directory of files) of Nexmark events (sluice nexmark gen)")
    parser.add_argument("--queries", type=parse_queries, default=list(ALL_QUERIES),
                        help="comma-separated list (q0,q5,...) or 'all' (default)")
    parser.add_argument("--parallelism", type=parse_parallelism, default=[1],
                        help="parallelism, or a comma-separated list (1,2); default 1")
    parser.add_argument("--runs", type=int, default=1, help="runs per query and parallelism")
    parser.add_argument("--events", type=int,
                        help="number of events in the file (default: count its lines)")
    parser.add_argument("--sink", choices=["blackhole", "print"], default="blackhole",
                        help="print: for checking, count the rows each query emits")
    parser.add_argument("--output-dir", type=Path,
                        help="with --sink print: keep each run's rows in DIR/<query>-p<P>-r<N>.txt")
    parser.add_argument("--jvm-args", default="",
                        help="extra JVM options for the Flink JVM (e.g. '-Xmx4g'); default none")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the per-run Flink logs (kept anyway when a run fails)")
    args = parser.parse_args()

    if not args.input.exists():
        parser.error(f"no such file or directory: {args.input}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.output_dir and args.sink != "print":
        parser.error("--output-dir needs --sink print")
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    events = args.events if args.events is not None else count_lines(args.input)

    work = Path(tempfile.mkdtemp(prefix="nexmark-flink-"))
    write_side_input(work / "side_input.csv")
    results: dict = {}
    failed = False
    try:
        for query in args.queries:
            for parallelism in args.parallelism:
                rs = results.setdefault((query, parallelism), [])
                for run in range(1, args.runs + 1):
                    try:
                        r = run_once(args, query, parallelism, run, work)
                    except RunFailed as e:
                        failed = True
                        print(f"flink query={query} parallelism={parallelism} run={run} FAILED",
                              flush=True)
                        print(str(e), file=sys.stderr, flush=True)
                        break
                    line = format_line(query, parallelism, run, events, r)
                    if args.sink == "print":
                        kinds = ",".join(f"{k}:{n}" for k, n in sorted(r["rows"].items()))
                        line += f" output_rows={sum(r['rows'].values())} changelog={kinds or '-'}"
                    print(line, flush=True)
                    print(f"# {query} p={parallelism} run={run}: python+JVM+TableEnvironment "
                          f"{r['jvm_start_seconds']:.2f} s, DDL {r['ddl_seconds']:.2f} s, "
                          f"plan+submit {r['plan_submit_seconds']:.2f} s, "
                          f"job wall {r['wall_job_seconds']:.2f} s",
                          file=sys.stderr, flush=True)
                    for sample in r["samples"]:
                        print(f"#   {sample[:160]}", file=sys.stderr, flush=True)
                    job_seconds = r["net_runtime_ms"] / 1000
                    rs.append({
                        "events_per_second": events / job_seconds if job_seconds > 0 else 0,
                        "job_seconds": job_seconds,
                        "cpu_seconds": r["cpu_seconds"],
                        "peak_rss_mib": r["peak_rss_mib"],
                        "startup_seconds": r["startup_seconds"],
                    })
    finally:
        if failed or args.keep_logs:
            print(f"# logs in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_summary(results, args.runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
