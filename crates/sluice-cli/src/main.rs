//! The `sluice` command: run built-in jobs on the embedded mini-cluster,
//! print their plans, and benchmark them.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sluice::{
    DecodeErrorPolicy, JobClient, RestartStrategy, RestoreSource, SluiceError,
    StreamExecutionEnvironment,
};
use sluice_cli::jobs::counting::counting;
use sluice_cli::jobs::kafka_wordcount::{kafka_word_count, KafkaWordCountOptions};
use sluice_cli::jobs::pipeline::pipeline;
use sluice_cli::jobs::window_count::{window_count, WindowKind};
use sluice_cli::jobs::wordcount::{word_count, FinalCounts, WordCountOptions};
use sluice_cli::process_stats::{cpu_time, peak_rss_bytes};
use sluice_kafka::DeliveryGuarantee;
use sluice_rest::{Dashboard, RestConfig, RestServer};

mod cluster_cli;
mod kafka_bench;
mod kafka_tools;
mod network_bench;
mod nexmark_cli;

// Records are allocated on one task thread and freed on another; mimalloc
// handles such cross-thread frees far better than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice", version, about = "A stream processor in the family of Apache Flink")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text, or as JSON objects with the job, vertex, subtask and attempt.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a built-in job on the embedded mini-cluster.
    Run(JobArgs),
    /// Print a built-in job's StreamGraph, JobGraph and ExecutionGraph without running it.
    Plan {
        #[command(flatten)]
        job: JobArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Measure throughput of a built-in benchmark job.
    Bench(BenchArgs),
    /// Nexmark tools.
    #[command(subcommand)]
    Nexmark(NexmarkCommand),
    /// Write lines into a Kafka topic, or print one to its end.
    #[command(subcommand)]
    Kafka(kafka_tools::KafkaCommand),
    /// Run a standalone JobManager: TaskManagers register with it and keep it informed by heartbeats.
    Jobmanager(cluster_cli::JobManagerArgs),
    /// Run a standalone TaskManager: registers its slots and data address with the JobManager.
    Taskmanager(cluster_cli::TaskManagerArgs),
    /// List the TaskManagers registered with a standalone JobManager.
    TaskManagers(cluster_cli::ListArgs),
    /// List the jobs a standalone cluster runs and ran.
    List(cluster_cli::ListArgs),
    /// Take a savepoint of a job running on a standalone cluster.
    Savepoint {
        /// The job's id, as `sluice list` shows it.
        job_id: String,
        /// Where the savepoint goes (written by the job's client).
        directory: String,
        #[command(flatten)]
        cluster: cluster_cli::ListArgs,
    },
    /// Stop a job running on a standalone cluster with a savepoint.
    Stop {
        /// The job's id, as `sluice list` shows it.
        job_id: String,
        /// Where the savepoint goes (written by the job's client).
        #[arg(long)]
        savepoint: String,
        #[command(flatten)]
        cluster: cluster_cli::ListArgs,
    },
    /// Cancel a job running on a standalone cluster.
    Cancel {
        /// The job's id, as `sluice list` shows it.
        job_id: String,
        #[command(flatten)]
        cluster: cluster_cli::ListArgs,
    },
}

#[derive(Subcommand)]
enum NexmarkCommand {
    /// Write generated Nexmark events as NDJSON (the reference field names) for other engines.
    Gen(nexmark_cli::GenArgs),
    /// Run one query and write its answer (changelog applied, sorted, NDJSON) to a file.
    Run(nexmark_cli::RunArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Job {
    /// Count the words of a text file or directory.
    Wordcount,
    /// generator → map → key_by → sum → discard.
    Pipeline,
    /// Paced generator → key_by → rolling count → exactly-once NDJSON files (--output).
    Counting,
    /// Lines from a Kafka topic → rolling word counts → another topic (--bootstrap-servers, --input-topic, --output-topic).
    KafkaWordcount,
}

#[derive(Args, Clone)]
struct JobArgs {
    /// The job.
    #[arg(value_enum)]
    job: Job,
    /// Input file or directory (wordcount).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Keep reading new files that appear in the --input directory, listing
    /// it this often; the job runs until Ctrl-C (wordcount).
    #[arg(long, value_parser = parse_duration)]
    monitor_interval: Option<Duration>,
    /// Default parallelism of the job's operators.
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Parallelism of the keyed operator and what follows it (default: --parallelism).
    #[arg(long)]
    reduce_parallelism: Option<usize>,
    /// Number of TaskManagers in the mini-cluster (default: 1 with the slots the job needs).
    #[arg(long, requires = "slots")]
    task_managers: Option<usize>,
    /// Slots per TaskManager.
    #[arg(long, requires = "task_managers")]
    slots: Option<usize>,
    /// How the mini-cluster's TaskManagers exchange records.
    #[arg(long, value_enum, default_value_t = DataPlaneArg::InMemory, requires = "task_managers")]
    data_plane: DataPlaneArg,
    #[command(flatten)]
    cluster: cluster_cli::SubmitArgs,
    /// Number of generated events (pipeline).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Number of distinct keys (pipeline, counting).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Events per second from the generator (counting; default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Output directory for exactly-once part files (counting).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Take a checkpoint this often, e.g. 100ms, 10s, 1m.
    #[arg(long, value_parser = parse_duration)]
    checkpoint_interval: Option<Duration>,
    /// Where checkpoints go (a directory, file:// or memory://).
    #[arg(long)]
    checkpoint_dir: Option<String>,
    /// Resume from a checkpoint: `latest` (under --checkpoint-dir) or a checkpoint directory.
    #[arg(long, conflicts_with = "from_savepoint")]
    from_checkpoint: Option<String>,
    /// Resume from a savepoint directory.
    #[arg(long)]
    from_savepoint: Option<String>,
    /// Skip state in the checkpoint or savepoint for operators the job no longer has.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// What to do with an input record that cannot be decoded (wordcount: a
    /// line that is not UTF-8): fail the job, or skip it and count it.
    #[arg(long, value_enum, default_value_t = OnDecodeError::Fail)]
    on_decode_error: OnDecodeError,
    /// Kafka brokers, host:port[,host:port] (kafka-wordcount).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Topic of lines to count (kafka-wordcount).
    #[arg(long)]
    input_topic: Option<String>,
    /// Topic the counts go to, word → count (kafka-wordcount).
    #[arg(long)]
    output_topic: Option<String>,
    /// Consumer group; its offsets follow completed checkpoints (kafka-wordcount).
    #[arg(long, default_value = "sluice-kafka-wordcount")]
    group_id: String,
    /// How often new partitions and topics are looked for; 0 turns discovery off (kafka-wordcount).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    partition_discovery_interval: Duration,
    /// What the Kafka sink promises (kafka-wordcount).
    #[arg(long, value_enum, default_value_t = Guarantee::AtLeastOnce)]
    delivery_guarantee: Guarantee,
    /// A sink that takes at most this many records per second per subtask,
    /// to see backpressure (pipeline).
    #[arg(long)]
    sink_rate: Option<f64>,
    /// Where the REST API and web UI listen, or `none`. The default port is
    /// replaced by the next free one if taken; off loopback a token is required.
    #[arg(long, default_value = DEFAULT_REST_ADDRESS)]
    rest_address: String,
    /// The bearer token the REST API requires (default: $SLUICE_REST_TOKEN).
    #[arg(long)]
    rest_token: Option<String>,
    /// Fail the job once the same failure that restarting cannot heal (bad
    /// input, a bug) happened this many times since the last checkpoint.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_identical_failures: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Guarantee {
    /// Fire and forget.
    None,
    /// Every record acknowledged before its checkpoint completes.
    AtLeastOnce,
    /// Kafka transactions committed with checkpoints.
    ExactlyOnce,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnDecodeError {
    /// Fail the job, naming the file and line.
    Fail,
    /// Skip the record, count it, and log it.
    Skip,
}

/// Parses `250ms`, `10s`, `2m` or a number of milliseconds.
pub(crate) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let (number, unit) = text
        .trim()
        .split_at(text.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(text.trim().len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 250ms, 10s or 2m"))?;
    match unit {
        "" | "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("'{text}': unknown unit '{unit}' (use ms, s or m)")),
    }
}

#[derive(Args, Clone)]
struct BenchArgs {
    /// The benchmark.
    #[arg(value_enum)]
    job: BenchJob,
    /// Number of generated events per run.
    #[arg(long, default_value_t = 50_000_000)]
    events: u64,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Parallelism of every operator.
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Number of runs; min and median are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Take a checkpoint this often (reports checkpoint durations and sizes).
    #[arg(long, value_parser = parse_duration)]
    checkpoint_interval: Option<Duration>,
    /// pipeline, windows, recovery, nexmark: spread the subtasks over this
    /// many TaskManagers (slots: parallelism / N, rounded up).
    #[arg(long)]
    task_managers: Option<usize>,
    /// How those TaskManagers exchange records.
    #[arg(long, value_enum, default_value_t = DataPlaneArg::InMemory, requires = "task_managers")]
    data_plane: DataPlaneArg,
    /// pipeline, windows, nexmark: on a standalone cluster (`--jobmanager`).
    #[command(flatten)]
    cluster: cluster_cli::SubmitArgs,
    /// kafka-source, kafka-sink, network: bytes per record value.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    #[command(flatten)]
    nexmark: nexmark_cli::NexmarkBenchArgs,
    #[command(flatten)]
    kafka: kafka_bench::KafkaBenchArgs,
    #[command(flatten)]
    network: network_bench::NetworkBenchArgs,
}

/// `--data-plane`: how a mini-cluster's TaskManagers exchange records.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum DataPlaneArg {
    /// In-memory channels.
    InMemory,
    /// TCP on loopback between TaskManagers, as between processes.
    Tcp,
}

impl From<DataPlaneArg> for sluice::DataPlane {
    fn from(arg: DataPlaneArg) -> Self {
        match arg {
            DataPlaneArg::InMemory => sluice::DataPlane::InMemory,
            DataPlaneArg::Tcp => sluice::DataPlane::Tcp,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchJob {
    /// generator → map → key_by → sum → discard.
    Pipeline,
    /// Count per key in 10 s tumbling event-time windows.
    TumblingWindow,
    /// Count per key in 10 s event-time windows every 2 s.
    SlidingWindow,
    /// The pipeline with checkpoints and one injected failure: time from the
    /// failure to the next completed checkpoint.
    Recovery,
    /// Nexmark queries (--query, --source) into a discarding sink, with latency and memory.
    Nexmark,
    /// A Kafka topic into a discarding sink, against a plain librdkafka consumer loop (--bootstrap-servers).
    KafkaSource,
    /// Kafka -> map -> Kafka at least once and exactly once: events/s and latency (--bootstrap-servers).
    KafkaSink,
    /// Decoding a Nexmark NDJSON file (--source FILE) with serde_json and with sonic-rs.
    NexmarkDecode,
    /// Bytes/s through one TaskManager-to-TaskManager data connection on loopback (--events records).
    Network,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Restarts, declined checkpoints and skipped records are warnings: a
    // user must see them without asking.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,sluice_kafka=info,sluice_rpc=info".into());
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // The task span's fields (job, vertex, subtask, attempt) on every line.
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => run_job(&args),
        Command::Plan { job, format } => {
            let (env, _) = build(&job)?;
            let plan = match job.cluster.cluster() {
                None => env.explain()?,
                Some((job_manager, security)) => {
                    cluster_cli::plan_on_cluster(&env, job_name(job.job), &job_manager, &security)?
                }
            };
            match format {
                Format::Text => println!("{plan}"),
                Format::Json => println!("{}", plan.to_json()),
            }
            Ok(())
        }
        Command::Bench(args) => bench(&args),
        Command::Nexmark(NexmarkCommand::Gen(args)) => nexmark_cli::generate(&args),
        Command::Nexmark(NexmarkCommand::Run(args)) => nexmark_cli::run(&args),
        Command::Kafka(command) => kafka_tools::run(&command),
        Command::Jobmanager(args) => cluster_cli::job_manager(args),
        Command::Taskmanager(args) => {
            cluster_cli::task_manager(args, Arc::new(job_for_task_manager))
        }
        Command::TaskManagers(args) => cluster_cli::list(args),
        Command::List(args) => cluster_cli::list_jobs(args),
        Command::Cancel { job_id, cluster } => cluster_cli::cancel(&job_id, cluster),
        Command::Savepoint { job_id, directory, cluster } => {
            cluster_cli::savepoint(&job_id, &directory, false, cluster)
        }
        Command::Stop { job_id, savepoint, cluster } => {
            cluster_cli::savepoint(&job_id, &savepoint, true, cluster)
        }
    }
}

/// Builds the job's environment; for wordcount also the sink holding the final counts.
fn build(args: &JobArgs) -> Result<(StreamExecutionEnvironment, Option<FinalCounts>)> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(args.parallelism);
    if let (Some(tms), Some(slots)) = (args.task_managers, args.slots) {
        env.set_mini_cluster_with(tms, slots, args.data_plane.into());
    }
    if let Some(interval) = args.checkpoint_interval {
        env.enable_checkpointing(interval);
    }
    if let Some(dir) = &args.checkpoint_dir {
        env.set_checkpoint_storage(dir.as_str());
    }
    let restore = match (&args.from_checkpoint, &args.from_savepoint) {
        (Some(latest), None) if latest == "latest" => Some(RestoreSource::Latest),
        (Some(path), None) | (None, Some(path)) => Some(RestoreSource::Path(path.clone())),
        _ => None,
    };
    if let Some(source) = restore {
        env.restore_from(source);
    }
    if args.allow_non_restored_state {
        env.allow_non_restored_state();
    }
    env.set_max_identical_failures(args.max_identical_failures);
    match args.job {
        Job::Counting => {
            counting(&env, args.events, args.keys, args.rate, args.output.clone())?;
            Ok((env, None))
        }
        Job::Wordcount => {
            let Some(input) = args.input.clone() else {
                bail!("wordcount needs --input FILE (a text file or directory)")
            };
            let options = WordCountOptions {
                parallelism: None,
                reduce_parallelism: args.reduce_parallelism,
                on_decode_error: match args.on_decode_error {
                    OnDecodeError::Fail => DecodeErrorPolicy::Fail,
                    OnDecodeError::Skip => DecodeErrorPolicy::Skip,
                },
                monitor_interval: args.monitor_interval,
            };
            let counts = FinalCounts::default();
            let mut sink = word_count(&env, input, &options)
                .sink_to(counts.clone())
                .name("Sink: final counts");
            if let Some(p) = args.reduce_parallelism {
                sink = sink.set_parallelism(p);
            }
            drop(sink);
            Ok((env, Some(counts)))
        }
        Job::Pipeline => {
            pipeline(&env, args.events, args.keys, args.reduce_parallelism, args.sink_rate);
            Ok((env, None))
        }
        Job::KafkaWordcount => {
            let required = |value: &Option<String>, flag: &str| {
                value.clone().with_context(|| format!("kafka-wordcount needs {flag}"))
            };
            let options = KafkaWordCountOptions {
                bootstrap_servers: required(
                    &args.bootstrap_servers,
                    "--bootstrap-servers HOST:PORT",
                )?,
                input_topic: required(&args.input_topic, "--input-topic TOPIC")?,
                output_topic: required(&args.output_topic, "--output-topic TOPIC")?,
                group_id: args.group_id.clone(),
                partition_discovery_interval: args.partition_discovery_interval,
                delivery_guarantee: match args.delivery_guarantee {
                    Guarantee::None => DeliveryGuarantee::None,
                    Guarantee::AtLeastOnce => DeliveryGuarantee::AtLeastOnce,
                    Guarantee::ExactlyOnce => DeliveryGuarantee::ExactlyOnce,
                },
            };
            kafka_word_count(&env, &options)?;
            Ok((env, None))
        }
    }
}

/// The name a built-in job runs under.
fn job_name(job: Job) -> &'static str {
    match job {
        Job::Wordcount => "word count",
        Job::Pipeline => "pipeline",
        Job::Counting => "counting",
        Job::KafkaWordcount => "kafka word count",
    }
}

/// Builds a built-in job in a TaskManager process, from the arguments of
/// the `sluice run` that submitted it.
fn job_for_task_manager(
    spec: &sluice_rpc::proto::JobSpec,
) -> sluice::Result<sluice_runtime::job_graph::JobGraph> {
    let refused = |why: String| {
        SluiceError::InvalidJob(format!(
            "cannot build job '{}' from {:?}: {why}",
            spec.job_name, spec.args
        ))
    };
    let argv = std::iter::once("sluice".to_string()).chain(spec.args.iter().cloned());
    let cli = Cli::try_parse_from(argv).map_err(|e| refused(e.to_string()))?;
    let env = match cli.command {
        Command::Run(args) => build(&args).map(|(env, _)| env),
        Command::Bench(args) => match args.job {
            BenchJob::Nexmark => nexmark_cli::task_manager_bench_env(
                &args.nexmark,
                args.events,
                args.parallelism,
                args.checkpoint_interval,
            ),
            BenchJob::Pipeline | BenchJob::TumblingWindow | BenchJob::SlidingWindow => {
                Ok(bench_env(&args, &std::env::temp_dir(), &Arc::default()))
            }
            _ => Err(anyhow::anyhow!("this benchmark does not run on a standalone cluster")),
        },
        _ => Err(anyhow::anyhow!("not a `sluice run` or `sluice bench` command")),
    };
    let env = env.map_err(|e| refused(format!("{e:#}")))?;
    Ok(env.job(&spec.job_name)?.0)
}

/// This command's arguments as TaskManagers build the job from them: paths
/// made absolute (a TaskManager runs in another directory), the secret left out.
fn job_spec_args() -> Vec<String> {
    let mut spec = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--cluster-secret" {
            args.next();
        } else if arg.starts_with("--cluster-secret=") {
        } else if arg == "--input" || arg == "--output" {
            spec.push(arg);
            spec.extend(
                args.next().map(|path| absolute(PathBuf::from(path)).display().to_string()),
            );
        } else {
            spec.push(arg);
        }
    }
    spec
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

fn run_job(args: &JobArgs) -> Result<()> {
    let mut args = args.clone();
    if args.cluster.jobmanager.is_some() {
        // As the TaskManagers will see them (`job_spec_args`).
        args.input = args.input.map(absolute);
        args.output = args.output.map(absolute);
    }
    let args = &args;
    let (env, counts) = build(args)?;
    let name = job_name(args.job);
    let stops = stop_requests()?;
    let rest = start_rest(args)?;
    let (client, session) = match args.cluster.cluster() {
        None => (env.execute_async(name)?, None),
        Some((job_manager, security)) => {
            let (client, session) = submit_to_cluster(&env, name, &job_manager, &security)?;
            eprintln!(
                "job '{name}' submitted to the JobManager at {job_manager}: {}",
                client.job_id()
            );
            (client, Some(session))
        }
    };
    if let Some((_, dashboard)) = &rest {
        dashboard.register(client.view());
    }
    let result = follow(client, &stops, args.checkpoint_dir.as_deref());
    if let Some(session) = session {
        session.close();
    }
    let stopped =
        matches!(&result, Err(e) if matches!(e.downcast_ref(), Some(SluiceError::Cancelled)));
    if let Some(counts) = counts.filter(|_| result.is_ok() || stopped) {
        let mut out = std::io::stdout().lock();
        for (word, count) in counts.sorted() {
            match writeln!(out, "{word}\t{count}") {
                Ok(()) => {}
                // The reader went away (`| head`): stop quietly, as Unix tools do.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(e).context("cannot write to standard output"),
            }
        }
    }
    if stopped {
        eprintln!("job '{name}' stopped");
        return Ok(());
    }
    let result = result?;
    let skipped: u64 = result.vertices.iter().map(|v| v.records_in_errors).sum();
    if skipped > 0 {
        eprintln!("{skipped} input records could not be decoded and were skipped");
    }
    eprintln!("job '{}' finished in {:.2?}", result.job_name, result.duration);
    Ok(())
}

/// The REST API's default address, as Flink's.
const DEFAULT_REST_ADDRESS: &str = "127.0.0.1:8081";

/// Starts the REST API and web UI unless `--rest-address none`; prints where.
fn start_rest(args: &JobArgs) -> Result<Option<(RestServer, Arc<Dashboard>)>> {
    if args.rest_address == "none" {
        return Ok(None);
    }
    let address: SocketAddr = args.rest_address.parse().with_context(|| {
        format!("--rest-address '{}' is not HOST:PORT (an IP address) or 'none'", args.rest_address)
    })?;
    let token = args.rest_token.clone().or_else(|| std::env::var(sluice_rest::TOKEN_ENV).ok());
    let dashboard = Dashboard::new();
    // Only the default port moves on when taken: a port the user named must be that port.
    let tries = if args.rest_address == DEFAULT_REST_ADDRESS { 100 } else { 1 };
    let mut last = None;
    for port in (address.port()..).take(tries) {
        let config =
            RestConfig { address: SocketAddr::new(address.ip(), port), token: token.clone() };
        match RestServer::start(config, dashboard.clone()) {
            Ok(server) => {
                eprintln!("Web UI and REST API: {}", server.url());
                return Ok(Some((server, dashboard)));
            }
            Err(e @ SluiceError::Config(_)) if e.to_string().contains("cannot listen") => {
                last = Some(e)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.expect("one try at least").into())
}

/// Counts Ctrl-C (SIGINT) and SIGTERM.
fn stop_requests() -> Result<Arc<AtomicUsize>> {
    let stops = Arc::new(AtomicUsize::new(0));
    let seen = stops.clone();
    ctrlc::set_handler(move || {
        seen.fetch_add(1, Ordering::SeqCst);
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(stops)
}

/// Waits for the job; on a terminal, shows records read and records/s
/// meanwhile. The first Ctrl-C stops the job gracefully — with a savepoint
/// under the checkpoint directory when it checkpoints, so everything read
/// so far is committed, as Flink's stop does — and a second one cancels it
/// at once.
fn follow(
    client: JobClient,
    stops: &AtomicUsize,
    checkpoint_dir: Option<&str>,
) -> Result<sluice::JobExecutionResult> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        bar
    });
    let started = Instant::now();
    let mut handled = 0;
    while !client.is_done() {
        let requested = stops.load(Ordering::SeqCst);
        if requested > handled {
            handled = requested;
            if handled == 1 {
                if let Some(bar) = &bar {
                    bar.suspend(|| eprintln!("stopping (Ctrl-C again to cancel at once)"));
                } else {
                    eprintln!("stopping (Ctrl-C again to cancel at once)");
                }
                stop_gracefully(&client, checkpoint_dir, stops);
            } else {
                client.cancel();
            }
        }
        if let Some(bar) = &bar {
            let records = client.source_records();
            let rate = records as f64 / started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{records} records read, {rate:.0} records/s"));
            bar.tick();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(client.wait()?)
}

/// Takes a savepoint and stops the job, or cancels it when it does not
/// checkpoint or the savepoint fails; a second stop request meanwhile cancels.
fn stop_gracefully(client: &JobClient, checkpoint_dir: Option<&str>, stops: &AtomicUsize) {
    let Some(dir) = checkpoint_dir.filter(|_| client.checkpoints_enabled()) else {
        client.cancel();
        return;
    };
    let path = format!("{}/savepoint-{}", dir.trim_end_matches('/'), client.job_id());
    std::thread::scope(|scope| {
        let savepoint = scope.spawn(|| client.stop_with_savepoint(&path));
        while !savepoint.is_finished() {
            if stops.load(Ordering::SeqCst) > 1 {
                client.cancel();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match savepoint.join() {
            Ok(Ok(path)) => eprintln!("savepoint written to {path}"),
            Ok(Err(e)) => {
                eprintln!("no savepoint ({}); cancelling", e.report());
                client.cancel();
            }
            Err(_) => client.cancel(),
        }
    });
}

/// A fresh directory for one run's checkpoints.
fn tempfile_dir() -> Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("sluice-bench-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// The pipeline, with a failure injected half way (once), recording when it happened.
fn recovery_pipeline(
    env: &StreamExecutionEnvironment,
    events: u64,
    keys: u64,
    failed_at: Arc<AtomicI64>,
) {
    let keys = keys.max(1);
    let half = events / 2;
    env.from_source(sluice::connectors::DataGeneratorSource::new(|i| i, Some(events)), "generator")
        .uid("generator")
        .map(move |i: u64| {
            if i == half && failed_at.load(Ordering::SeqCst) == 0 {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                failed_at.store(now as i64, Ordering::SeqCst);
                panic!("injected failure for the recovery benchmark");
            }
            (i % keys, 1u64)
        })
        .key_by(|(k, _): &(u64, u64)| *k)
        .sum(|(_, c)| c)
        .uid("sum")
        .discard();
}

/// Prints what the run's checkpoints cost and, after a failure, how long until the next one completed.
fn report_checkpoints(result: &sluice::JobExecutionResult, failed_at: i64) {
    let completed: Vec<_> = result
        .checkpoints
        .iter()
        .filter(|c| c.duration_ms.is_some() && c.status == sluice::CheckpointStatus::Completed)
        .collect();
    if completed.is_empty() {
        return;
    }
    let mut durations: Vec<i64> = completed.iter().filter_map(|c| c.duration_ms).collect();
    durations.sort_unstable();
    let max_size = completed.iter().map(|c| c.state_size).max().unwrap_or(0);
    let mut syncs: Vec<i64> = completed.iter().map(|c| c.sync_ms).collect();
    syncs.sort_unstable();
    println!(
        "  checkpoints: {} completed, duration median {} ms / max {} ms, sync part median {} ms / max {} ms, largest {:.1} MiB, restarts {}",
        completed.len(),
        durations[durations.len() / 2],
        durations[durations.len() - 1],
        syncs[syncs.len() / 2],
        syncs[syncs.len() - 1],
        max_size as f64 / (1 << 20) as f64,
        result.restarts
    );
    if failed_at > 0 {
        if let Some(next) = completed.iter().find(|c| c.trigger_time > failed_at) {
            let done = next.trigger_time + next.duration_ms.unwrap_or(0);
            println!("  failure to next completed checkpoint: {} ms", done - failed_at);
        }
    }
}

fn bench(args: &BenchArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let BenchJob::KafkaSource | BenchJob::KafkaSink = args.job {
        let checkpoints = tempfile_dir()?;
        let bench = kafka_bench::KafkaBench {
            kafka: &args.kafka,
            events: args.events,
            record_bytes: args.record_bytes,
            parallelism: args.parallelism,
            runs: args.runs,
            checkpoint_interval: args.checkpoint_interval,
            checkpoint_dir: &checkpoints,
        };
        let result = match args.job {
            BenchJob::KafkaSource => kafka_bench::source(&bench),
            _ => kafka_bench::sink(&bench),
        };
        let _ = std::fs::remove_dir_all(&checkpoints);
        return result;
    }
    if let BenchJob::NexmarkDecode = args.job {
        return nexmark_cli::decode_bench(&args.nexmark, args.runs);
    }
    if let BenchJob::Network = args.job {
        return network_bench::run(&args.network, args.events, args.record_bytes, args.runs);
    }
    if let BenchJob::Nexmark = args.job {
        let checkpoints = tempfile_dir()?;
        let result = nexmark_cli::bench(&nexmark_cli::BenchSettings {
            nexmark: &args.nexmark,
            events: args.events,
            parallelism: args.parallelism,
            runs: args.runs,
            checkpoint_interval: args.checkpoint_interval,
            checkpoint_dir: &checkpoints,
            cluster: args.task_managers.map(|n| (n, args.data_plane.into())),
            job_manager: args.cluster.cluster(),
        });
        let _ = std::fs::remove_dir_all(&checkpoints);
        return result;
    }
    let description = match args.job {
        BenchJob::Pipeline => "pipeline: generator -> map -> key_by -> sum -> discard",
        BenchJob::TumblingWindow => "tumbling-window: generator -> key_by -> 10 s tumbling event-time window count -> discard",
        BenchJob::SlidingWindow => "sliding-window: generator -> key_by -> 10 s / 2 s sliding event-time window count -> discard",
        BenchJob::Recovery => "recovery: pipeline with checkpoints, one failure half way",
        BenchJob::Nexmark
            | BenchJob::NexmarkDecode
            | BenchJob::Network
            | BenchJob::KafkaSource
            | BenchJob::KafkaSink => {
            unreachable!("handled above")
        }
    };
    println!(
        "{description}, {} events, {} keys, parallelism {}",
        args.events, args.keys, args.parallelism
    );
    let cluster = args.cluster.cluster();
    if cluster.is_some() && matches!(args.job, BenchJob::Recovery) {
        bail!("bench recovery runs on the mini-cluster only (it injects its failure in-process)");
    }
    if let Some((job_manager, _)) = &cluster {
        println!("on the standalone cluster at {job_manager}: CPU time and peak RSS are this client's, not the TaskManagers'");
    }
    let mut rates = Vec::new();
    let mut per_core = Vec::new();
    for run in 1..=args.runs {
        let checkpoints = tempfile_dir()?;
        let failed_at = Arc::new(AtomicI64::new(0));
        let env = bench_env(args, &checkpoints, &failed_at);
        let (cpu0, t0) = (cpu_time(), Instant::now());
        let result = match &cluster {
            None => env.execute("benchmark")?,
            Some((job_manager, security)) => {
                execute_on_cluster(&env, "benchmark", job_manager, security)?
            }
        };
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), (cpu_time() - cpu0).as_secs_f64());
        let _ = std::fs::remove_dir_all(&checkpoints);
        report_checkpoints(&result, failed_at.load(Ordering::SeqCst));
        let rate = args.events as f64 / wall;
        let rate_cpu = args.events as f64 / cpu.max(1e-9);
        println!(
            "run {run}: {:.2} s, {:.2}M events/s, {:.2}M events per CPU-second ({:.2} cores busy)",
            wall,
            rate / 1e6,
            rate_cpu / 1e6,
            cpu / wall
        );
        rates.push(rate);
        per_core.push(rate_cpu);
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let (min, median) = stats(&mut rates);
    let (cmin, cmedian) = stats(&mut per_core);
    println!("events/s:            min {:.2}M, median {:.2}M", min / 1e6, median / 1e6);
    println!("events/CPU-second:   min {:.2}M, median {:.2}M", cmin / 1e6, cmedian / 1e6);
    if let Some(rss) = peak_rss_bytes() {
        println!("peak RSS:            {:.1} MiB", rss as f64 / (1 << 20) as f64);
    }
    Ok(())
}

/// Runs `env`'s job on the standalone cluster at `job_manager` to its end.
pub(crate) fn execute_on_cluster(
    env: &StreamExecutionEnvironment,
    name: &str,
    job_manager: &str,
    security: &sluice_rpc::Security,
) -> Result<sluice::JobExecutionResult> {
    let (client, session) = submit_to_cluster(env, name, job_manager, security)?;
    let result = client.wait();
    session.close();
    Ok(result?)
}

/// Submits `env`'s job to the standalone cluster at `job_manager`, for
/// TaskManagers to build from this command's arguments.
fn submit_to_cluster(
    env: &StreamExecutionEnvironment,
    name: &str,
    job_manager: &str,
    security: &sluice_rpc::Security,
) -> Result<(JobClient, sluice_rpc::client::ClusterSession)> {
    let (job_graph, options) = env.job(name)?;
    Ok(sluice_rpc::client::submit(job_manager, security, job_graph, options, job_spec_args())?)
}

/// The environment of one run of a benchmark job (pipeline, windows, recovery).
fn bench_env(
    args: &BenchArgs,
    checkpoints: &std::path::Path,
    failed_at: &Arc<AtomicI64>,
) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(args.parallelism);
    if let Some(tms) = args.task_managers {
        env.set_mini_cluster_with(tms, args.parallelism.div_ceil(tms), args.data_plane.into());
    }
    if let Some(interval) = args.checkpoint_interval {
        env.enable_checkpointing(interval)
            .set_checkpoint_storage(checkpoints.display().to_string());
    }
    {
        match args.job {
            BenchJob::Recovery => {
                env.enable_checkpointing(
                    args.checkpoint_interval.unwrap_or(Duration::from_millis(500)),
                )
                .set_checkpoint_storage(checkpoints.display().to_string())
                .set_restart_strategy(RestartStrategy::FixedDelay {
                    attempts: 1,
                    delay: Duration::ZERO,
                });
                recovery_pipeline(&env, args.events, args.keys, failed_at.clone());
            }
            BenchJob::Pipeline => drop(pipeline(&env, args.events, args.keys, None, None)),
            BenchJob::TumblingWindow => {
                drop(window_count(&env, args.events, args.keys, WindowKind::Tumbling))
            }
            BenchJob::SlidingWindow => {
                drop(window_count(&env, args.events, args.keys, WindowKind::Sliding))
            }
            BenchJob::Nexmark
            | BenchJob::NexmarkDecode
            | BenchJob::Network
            | BenchJob::KafkaSource
            | BenchJob::KafkaSink => {
                unreachable!("handled above")
            }
        }
    }
    env
}
