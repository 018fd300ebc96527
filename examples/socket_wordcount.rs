//! Word count over lines from a TCP socket, as Flink's SocketWindowWordCount
//! without the window: every line updates and prints the running counts.
//!
//! Start a server first, for example `nc -lk 9999`, then
//! `cargo run --release --example socket_wordcount -- localhost 9999`
//! and type lines into the server. The job ends when the server closes the connection.

use sluice::StreamExecutionEnvironment;

fn main() -> sluice::Result<()> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "localhost".into());
    let port: u16 = args.next().map(|p| p.parse().expect("PORT must be a number")).unwrap_or(9999);

    let env = StreamExecutionEnvironment::new();
    env.socket_text_stream(&host, port)
        .flat_map(|line: String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .map(|w| (w, 1u64))
        .key_by(|(w, _): &(String, u64)| w.clone())
        .sum(|(_, c)| c)
        .set_parallelism(2)
        .map(|(word, count)| format!("{word}: {count}"))
        .print();
    env.execute("socket word count")?;
    Ok(())
}
