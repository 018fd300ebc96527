//! `sluice nexmark gen`, `sluice nexmark run` and `sluice bench nexmark`:
//! write the generator's events as NDJSON for other engines, write a query's
//! answer for cross-checking, and measure the queries on the mini-cluster
//! into a discarding sink.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use sluice::connectors::nexmark::{json, GeneratorConfig};
use sluice::Data;
use sluice::{DataStream, StreamExecutionEnvironment};
use sluice_cli::process_stats::{cpu_time, peak_rss_bytes};
use sluice_nexmark::latency::{LatencySink, LatencyTracker};
use sluice_nexmark::{tracked_events, NexmarkInput, Query, QuerySink};

/// Generator settings shared by `gen` and `bench`.
#[derive(Args, Clone, Debug)]
pub struct GeneratorArgs {
    /// Seed of the generator: the same seed gives the same events.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Events per second of event time.
    #[arg(long, default_value_t = 10_000)]
    event_rate: u64,
    /// Shuffle events within groups of this many (1: in order).
    #[arg(long, default_value_t = 1)]
    out_of_order_group_size: u64,
    /// People who bid and sell at any time (the person keys in flight).
    #[arg(long, default_value_t = 1000)]
    active_people: u64,
    /// Auctions open at any time (the auction keys in flight).
    #[arg(long, default_value_t = 100)]
    in_flight_auctions: u64,
    /// A bid goes to a hot auction with probability 1 − 1/R (1: no hot set, uniform).
    #[arg(long, default_value_t = 2)]
    hot_auction_ratio: u32,
    /// An auction has a hot seller with probability 1 − 1/R (1: uniform).
    #[arg(long, default_value_t = 4)]
    hot_seller_ratio: u32,
    /// A bid has a hot bidder with probability 1 − 1/R (1: uniform).
    #[arg(long, default_value_t = 4)]
    hot_bidder_ratio: u32,
    /// Number of distinct bid channels besides the four hot ones (at most 10000).
    #[arg(long, default_value_t = 10_000)]
    channels: usize,
}

impl GeneratorArgs {
    fn config(&self) -> GeneratorConfig {
        GeneratorConfig {
            seed: self.seed,
            event_rate: self.event_rate,
            out_of_order_group_size: self.out_of_order_group_size,
            num_active_people: self.active_people,
            num_in_flight_auctions: self.in_flight_auctions,
            hot_auction_ratio: self.hot_auction_ratio,
            hot_sellers_ratio: self.hot_seller_ratio,
            hot_bidders_ratio: self.hot_bidder_ratio,
            num_channels: self.channels,
            ..GeneratorConfig::default()
        }
    }
}

/// `sluice nexmark gen`.
#[derive(Args, Debug)]
pub struct GenArgs {
    /// Number of events.
    #[arg(long)]
    events: u64,
    /// The NDJSON file to write.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    generator: GeneratorArgs,
}

/// Writes the generator's events to a file, one JSON object per line.
pub fn generate(args: &GenArgs) -> Result<()> {
    let config = args.generator.config();
    config.validate()?;
    let file =
        File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let started = Instant::now();
    for n in 0..args.events {
        json::write_event(&config.event_at(n, Some(args.events)), &mut out)
            .with_context(|| format!("cannot write to {}", args.out.display()))?;
    }
    out.flush().with_context(|| format!("cannot write to {}", args.out.display()))?;
    eprintln!(
        "wrote {} events to {} in {:.2?}",
        args.events,
        args.out.display(),
        started.elapsed()
    );
    Ok(())
}

/// `sluice nexmark run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The query (q0 … q22).
    #[arg(long)]
    query: String,
    /// `generator`, or an NDJSON file written by `sluice nexmark gen`.
    #[arg(long, default_value = "generator")]
    source: String,
    /// Events from the generator (a file is read whole).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Parallelism of every operator.
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Where the answer goes: one JSON array per row, sorted (see docs/NEXMARK.md).
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    generator: GeneratorArgs,
}

/// The events `--source` names: the generator with its settings, or a file (or directory) of NDJSON.
fn nexmark_input(source: &str, generator: &GeneratorArgs, events: u64) -> Result<NexmarkInput> {
    if source == "generator" {
        let config = generator.config();
        config.validate()?;
        Ok(NexmarkInput::Generator { config, events: Some(events) })
    } else if Path::new(source).exists() {
        Ok(NexmarkInput::File(PathBuf::from(source)))
    } else {
        bail!("--source '{source}' is neither `generator` nor an existing file")
    }
}

/// Runs one query to the end of its input and writes its answer.
pub fn run(args: &RunArgs) -> Result<()> {
    let query: Query = args.query.parse()?;
    let input = nexmark_input(&args.source, &args.generator, args.events)?;
    let started = Instant::now();
    let answer = sluice_nexmark::answer::run(query, &input, args.parallelism)?;
    let file = File::create(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    answer
        .write_to(&mut out)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write to {}", args.output.display()))?;
    eprintln!(
        "{query}: {} rows in the answer, written to {} in {:.2?}",
        answer.len(),
        args.output.display(),
        started.elapsed()
    );
    Ok(())
}

/// `sluice bench nexmark` options.
#[derive(Args, Debug, Clone)]
pub struct NexmarkBenchArgs {
    /// The query (q0 … q22), a comma-separated list, or `all`.
    #[arg(long, default_value = "all")]
    query: String,
    /// `generator`, or an NDJSON file written by `sluice nexmark gen`.
    #[arg(long, default_value = "generator")]
    source: String,
    #[command(flatten)]
    generator: GeneratorArgs,
}

/// Everything one query's benchmark needs.
pub struct BenchSettings<'a> {
    /// What to run and on what.
    pub nexmark: &'a NexmarkBenchArgs,
    /// Events per run (generator) — a file is read whole.
    pub events: u64,
    /// Parallelism of every operator.
    pub parallelism: usize,
    /// Runs per query.
    pub runs: usize,
    /// Checkpoint interval, if any.
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoints go.
    pub checkpoint_dir: &'a Path,
    /// Spread the subtasks over this many TaskManagers exchanging records this way.
    pub cluster: Option<(usize, sluice::DataPlane)>,
    /// Run on the standalone cluster whose JobManager is here, with this security.
    pub job_manager: Option<(String, sluice_rpc::Security)>,
}

fn parse_queries(text: &str) -> Result<Vec<Query>> {
    if text == "all" {
        return Ok(Query::ALL.to_vec());
    }
    Ok(text.split(',').map(|q| q.trim().parse()).collect::<sluice::Result<Vec<_>>>()?)
}

/// Runs the benchmark: one query in this process, several in one child
/// process each, so each query's peak memory is its own.
pub fn bench(settings: &BenchSettings<'_>) -> Result<()> {
    let queries = parse_queries(&settings.nexmark.query)?;
    let n = settings.nexmark;
    nexmark_input(&n.source, &n.generator, settings.events)?;
    if let [query] = queries[..] {
        return bench_query(query, settings);
    }
    let mut table = Vec::new();
    for query in queries {
        let summary = bench_in_child(query, settings)?;
        table.push(summary);
    }
    println!();
    println!(
        "{:<6}{:>14}{:>14}{:>16}{:>16}{:>10}{:>10}{:>11}",
        "query",
        "events/s min",
        "median",
        "per core min",
        "per core median",
        "p50 ms",
        "p99 ms",
        "peak MiB"
    );
    for line in &table {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or("-")
                .to_string()
        };
        let millions = |name: &str| {
            field(name).parse::<f64>().map_or("-".into(), |v| format!("{:.2}M", v / 1e6))
        };
        println!(
            "{:<6}{:>14}{:>14}{:>16}{:>16}{:>10}{:>10}{:>11}",
            field("query"),
            millions("events_per_second_min"),
            millions("events_per_second_median"),
            millions("events_per_cpu_second_min"),
            millions("events_per_cpu_second_median"),
            field("p50_ms"),
            field("p99_ms"),
            field("peak_rss_mib")
        );
    }
    Ok(())
}

/// Runs `sluice bench nexmark --query <query>` with the same settings and
/// returns its summary line, passing its other output through.
fn bench_in_child(query: Query, settings: &BenchSettings<'_>) -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the sluice executable")?;
    let n = settings.nexmark;
    let mut command = Command::new(exe);
    command.args(["bench", "nexmark", "--query", &query.to_string(), "--source", &n.source]);
    command.args(["--events", &settings.events.to_string()]);
    command.args(["--parallelism", &settings.parallelism.to_string()]);
    command.args(["--runs", &settings.runs.to_string()]);
    command.args(["--seed", &n.generator.seed.to_string()]);
    command.args(["--event-rate", &n.generator.event_rate.to_string()]);
    command.args(["--out-of-order-group-size", &n.generator.out_of_order_group_size.to_string()]);
    if let Some(interval) = settings.checkpoint_interval {
        command.args(["--checkpoint-interval", &format!("{}ms", interval.as_millis())]);
    }
    if let Some((task_managers, data_plane)) = settings.cluster {
        command.args(["--task-managers", &task_managers.to_string()]);
        let plane = if data_plane == sluice::DataPlane::Tcp { "tcp" } else { "in-memory" };
        command.args(["--data-plane", plane]);
    }
    let mut child = command.stdout(Stdio::piped()).spawn().context("cannot start a benchmark")?;
    let mut summary = None;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if line.starts_with("sluice summary ") {
            summary = Some(line);
        }
    }
    let status = child.wait()?;
    match summary {
        Some(summary) if status.success() => Ok(summary),
        _ => bail!("the benchmark of {query} failed ({status})"),
    }
}

/// Hands a query's results to a [`LatencySink`].
struct BenchSink {
    tracker: std::sync::Arc<LatencyTracker>,
    measure_latency: bool,
}

impl QuerySink for BenchSink {
    fn sink<T: Data>(&mut self, results: DataStream<T>) {
        drop(
            results
                .sink_to(LatencySink::new(self.tracker.clone(), self.measure_latency))
                .name("Sink: discard (latency)"),
        );
    }
}

/// Peak resident memory of this process so far, in MiB.
fn peak_rss_mib() -> String {
    peak_rss_bytes().map_or("-".into(), |b| format!("{:.0}", b as f64 / (1 << 20) as f64))
}

/// In a TaskManager: the environment of `sluice bench nexmark` with these
/// arguments (one query), as the submitting command built it.
pub(crate) fn task_manager_bench_env(
    nexmark: &NexmarkBenchArgs,
    events: u64,
    parallelism: usize,
    checkpoint_interval: Option<Duration>,
) -> Result<StreamExecutionEnvironment> {
    let [query] = parse_queries(&nexmark.query)?[..] else {
        bail!("a standalone cluster runs one Nexmark query at a time, not '{}'", nexmark.query)
    };
    let settings = BenchSettings {
        nexmark,
        events,
        parallelism,
        runs: 1,
        checkpoint_interval,
        checkpoint_dir: Path::new(""),
        cluster: None,
        job_manager: None,
    };
    Ok(bench_env(query, &settings)?.0)
}

/// The environment of one run of `query`, and its latency tracker.
pub(crate) fn bench_env(
    query: Query,
    settings: &BenchSettings<'_>,
) -> Result<(StreamExecutionEnvironment, std::sync::Arc<LatencyTracker>)> {
    let n = settings.nexmark;
    let tracker = LatencyTracker::new();
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(settings.parallelism);
    if let Some((task_managers, data_plane)) = settings.cluster {
        let slots = settings.parallelism.div_ceil(task_managers);
        env.set_mini_cluster_with(task_managers, slots, data_plane);
    }
    if let Some(interval) = settings.checkpoint_interval {
        env.enable_checkpointing(interval)
            .set_checkpoint_storage(settings.checkpoint_dir.display().to_string());
    }
    let input = nexmark_input(&n.source, &n.generator, settings.events)?;
    let events = tracked_events(&env, &input, tracker.clone())?;
    let mut sink =
        BenchSink { tracker: tracker.clone(), measure_latency: !query.is_processing_time() };
    query.add_to(&events, &mut sink);
    Ok((env, tracker))
}

fn bench_query(query: Query, settings: &BenchSettings<'_>) -> Result<()> {
    let n = settings.nexmark;
    let source = if n.source == "generator" { "generator".to_string() } else { n.source.clone() };
    println!(
        "nexmark {query}: source {source}, {}parallelism {}{}",
        if n.source == "generator" {
            format!("{} events, ", settings.events)
        } else {
            String::new()
        },
        settings.parallelism,
        settings
            .checkpoint_interval
            .map_or(String::new(), |i| format!(", checkpoints every {i:?}"))
    );
    if let Some((job_manager, _)) = &settings.job_manager {
        println!("on the standalone cluster at {job_manager}: CPU time and peak RSS are this client's, not the TaskManagers', and latency is not measured");
    }
    let mut runs = Vec::new();
    for run in 1..=settings.runs {
        let (env, tracker) = bench_env(query, settings)?;
        let name = format!("nexmark {query}");
        let (cpu0, t0) = (cpu_time(), Instant::now());
        let result = match &settings.job_manager {
            None => env.execute(&name)?,
            // Latency is tracked where the sinks run: not here.
            Some((job_manager, security)) => {
                super::execute_on_cluster(&env, &name, job_manager, security)?
            }
        };
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), (cpu_time() - cpu0).as_secs_f64());
        let events: u64 = result.vertices.iter().map(|v| v.source_records).sum();
        super::report_checkpoints(&result, 0);
        let latency = tracker.percentiles();
        let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
        let (p50, p99) = latency.map_or(("-".into(), "-".into()), |(a, b)| (ms(a), ms(b)));
        println!(
            "sluice query={query} parallelism={} run={run} events={events} seconds={wall:.3} events_per_second={:.0} cpu_seconds={cpu:.3} events_per_cpu_second={:.0} p50_ms={p50} p99_ms={p99} results={} peak_rss_mib={}",
            settings.parallelism,
            events as f64 / wall,
            events as f64 / cpu.max(1e-9),
            tracker.results(),
            peak_rss_mib()
        );
        runs.push((events as f64 / wall, events as f64 / cpu.max(1e-9), latency));
    }
    let min_median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let (eps_min, eps_median) = min_median(runs.iter().map(|r| r.0).collect());
    let (cpu_min, cpu_median) = min_median(runs.iter().map(|r| r.1).collect());
    // Latency of the median run by throughput.
    let mut by_rate: Vec<_> = runs.iter().collect();
    by_rate.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median_latency = by_rate[by_rate.len() / 2].2;
    let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
    let (p50, p99) = median_latency.map_or(("-".into(), "-".into()), |(a, b)| (ms(a), ms(b)));
    let rss = peak_rss_mib();
    println!(
        "sluice summary query={query} parallelism={} runs={} events_per_second_min={eps_min:.0} events_per_second_median={eps_median:.0} events_per_cpu_second_min={cpu_min:.0} events_per_cpu_second_median={cpu_median:.0} p50_ms={p50} p99_ms={p99} peak_rss_mib={rss}",
        settings.parallelism,
        settings.runs
    );
    Ok(())
}

/// Times decoding every line of a Nexmark NDJSON file, held in memory, with
/// serde_json (what the file source uses) and with sonic-rs; checks that
/// both give the same events. sonic-rs did not pay (bench/RESULTS.md), so it
/// is only a dependency of this command.
pub fn decode_bench(args: &NexmarkBenchArgs, runs: usize) -> Result<()> {
    if args.source == "generator" {
        bail!(
            "bench nexmark-decode needs --source FILE (an NDJSON file from `sluice nexmark gen`)"
        );
    }
    let text = std::fs::read_to_string(&args.source)
        .with_context(|| format!("cannot read {}", args.source))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    println!(
        "nexmark-decode: {} events, {:.0} MiB, from {}",
        lines.len(),
        text.len() as f64 / (1 << 20) as f64,
        args.source
    );
    type Decoder = fn(&str) -> std::result::Result<sluice::connectors::nexmark::Event, String>;
    let decoders: [(&str, Decoder); 2] =
        [("serde_json", json::parse_event), ("sonic-rs", parse_event_sonic)];
    // The same events from both, or the comparison means nothing.
    for (n, line) in lines.iter().enumerate() {
        let (a, b) = (json::parse_event(line), parse_event_sonic(line));
        if a != b {
            bail!("line {}: serde_json and sonic-rs disagree: {a:?} / {b:?}", n + 1);
        }
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); decoders.len()];
    for run in 1..=runs {
        // In turn, so that the host's drift touches both alike.
        for (i, (name, decode)) in decoders.iter().enumerate() {
            let started = Instant::now();
            let mut events = 0usize;
            for line in &lines {
                std::hint::black_box(decode(line).map_err(anyhow::Error::msg)?);
                events += 1;
            }
            let rate = events as f64 / started.elapsed().as_secs_f64();
            println!("run {run}: {name} {rate:.0} events/s");
            rates[i].push(rate);
        }
    }
    let mut ratios: Vec<f64> = rates[1].iter().zip(&rates[0]).map(|(s, j)| s / j).collect();
    for (i, (name, _)) in decoders.iter().enumerate() {
        rates[i].sort_by(f64::total_cmp);
        println!(
            "{name}: min {:.0}, median {:.0} events/s",
            rates[i][0],
            rates[i][rates[i].len() / 2]
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!("sonic-rs / serde_json: min {:.2}, median {:.2}", ratios[0], ratios[ratios.len() / 2]);
    Ok(())
}

/// [`json::parse_event`] with sonic-rs, a SIMD JSON parser, instead of serde_json.
fn parse_event_sonic(
    line: &str,
) -> std::result::Result<sluice::connectors::nexmark::Event, String> {
    json::event(sonic_rs::from_str(line).map_err(|e| e.to_string())?)
}
