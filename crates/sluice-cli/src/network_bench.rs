//! `sluice bench network`: bytes per second through one TaskManager-to-
//! TaskManager data connection on loopback. Two data planes run in this
//! process, as two TaskManagers would; the bytes still cross a real TCP
//! socket, with the same framing, encoding and credits as a job's channels.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use sluice::StreamRecord;
use sluice_core::{RecordBatch, StreamElement};
use sluice_runtime::network::frame::ChannelId;
use sluice_runtime::network::{DataTls, NetworkConfig, NetworkEnvironment};
use sluice_runtime::stream_graph::OutputType;

use sluice_cli::process_stats::{cpu_time, peak_rss_bytes};

/// `sluice bench network` options.
#[derive(Args, Debug, Clone)]
pub struct NetworkBenchArgs {
    /// Records per batch (one frame each).
    #[arg(long, default_value_t = 128)]
    pub batch_records: usize,
    /// Channels sharing the connection, each with its own sending and receiving thread.
    #[arg(long, default_value_t = 2)]
    pub data_channels: u32,
    /// Credits per channel (batches in flight).
    #[arg(long, default_value_t = 8)]
    pub credits: u32,
    /// Run the connection over mutual TLS with this certificate (PEM, for
    /// 127.0.0.1), its key and its CA, used by both ends.
    #[arg(long, num_args = 3, value_names = ["CERT", "KEY", "CA"])]
    pub tls: Option<Vec<PathBuf>>,
}

/// Runs the benchmark `runs` times with `records` records in all.
pub fn run(args: &NetworkBenchArgs, records: u64, record_bytes: usize, runs: usize) -> Result<()> {
    if args.data_channels == 0 || args.batch_records == 0 {
        bail!("--data-channels and --batch-records must be at least 1");
    }
    println!(
        "network: {records} records of {} bytes in batches of {}, over {} channels of one loopback connection{}, {} credits each",
        record_bytes,
        args.batch_records,
        args.data_channels,
        if args.tls.is_some() { " over TLS" } else { "" },
        args.credits
    );
    let mut rates = Vec::new();
    for run in 1..=runs {
        let (wall, cpu, bytes) = one_run(args, records, record_bytes, run as u32)?;
        let rate = bytes as f64 / wall;
        println!(
            "run {run}: {:.2} s, {:.2} GB/s on the wire ({} bytes), {:.2}M records/s, {:.2} cores busy",
            wall,
            rate / 1e9,
            bytes,
            records as f64 / wall / 1e6,
            cpu / wall
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "bytes/s:             min {:.2} GB/s, median {:.2} GB/s",
        rates[0] / 1e9,
        rates[rates.len() / 2] / 1e9
    );
    if let Some(rss) = peak_rss_bytes() {
        println!("peak RSS:            {:.1} MiB", rss as f64 / (1 << 20) as f64);
    }
    Ok(())
}

fn one_run(
    args: &NetworkBenchArgs,
    records: u64,
    record_bytes: usize,
    attempt: u32,
) -> Result<(f64, f64, u64)> {
    let tls = match args.tls.as_deref() {
        Some([cert, key, ca]) => Some(DataTls::load(cert, key, ca)?),
        _ => None,
    };
    let start = |id: &str| {
        NetworkEnvironment::start(NetworkConfig {
            task_manager: id.into(),
            bind: "127.0.0.1:0".parse().expect("a loopback address"),
            secret: Some(b"bench".to_vec()),
            tls: tls.clone(),
        })
    };
    let (a, b) = (start("bench-a")?, start("bench-b")?);
    a.connect("bench-b", b.address())?;
    b.connect("bench-a", a.address())?;
    // A string, which serde writes as one byte slice (a `Vec<u8>` goes byte by byte).
    let codec = OutputType::of::<String>();
    let batches = records.div_ceil(args.batch_records as u64);
    let per_channel = batches.div_ceil(args.data_channels as u64);
    let mut ends = Vec::new();
    for index in 0..args.data_channels {
        let channel = ChannelId { job: 1, attempt, index };
        let rx = b.input_channel("bench-a", channel, args.credits, codec.decode_batch)?;
        let tx = a.output_channel("bench-b", channel, codec.encode_batch)?;
        ends.push((tx, rx));
    }
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let threads: Vec<_> = ends
        .into_iter()
        .map(|(tx, rx)| {
            let batch_records = args.batch_records;
            let sender = std::thread::spawn(move || -> Result<()> {
                let payload = "x".repeat(record_bytes);
                for _ in 0..per_channel {
                    let batch =
                        (0..batch_records).map(|_| StreamRecord::new(payload.clone())).collect();
                    if tx.send(StreamElement::Records(RecordBatch::new(batch))).is_err() {
                        bail!("the data connection closed during the benchmark");
                    }
                }
                let _ = tx.send(StreamElement::EndOfInput);
                Ok(())
            });
            let receiver = std::thread::spawn(move || -> Result<u64> {
                let mut received = 0u64;
                loop {
                    match rx.recv() {
                        Some(StreamElement::Records(batch)) => received += batch.len() as u64,
                        Some(StreamElement::EndOfInput) => return Ok(received),
                        Some(_) => {}
                        None => bail!("the data connection closed during the benchmark"),
                    }
                }
            });
            (sender, receiver)
        })
        .collect();
    let mut received = 0;
    for (sender, receiver) in threads {
        sender.join().expect("sender thread")?;
        received += receiver.join().expect("receiver thread")?;
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), (cpu_time() - cpu0).as_secs_f64());
    let expected = per_channel * args.data_channels as u64 * args.batch_records as u64;
    if received != expected {
        bail!("received {received} records, sent {expected}");
    }
    let bytes = a.bytes_sent();
    a.shutdown();
    b.shutdown();
    Ok((wall, cpu, bytes))
}
