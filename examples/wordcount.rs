//! Word count over a text file, printed as (word, count) updates.
//!
//! Run: `cargo run --release --example wordcount -- words.txt [parallelism]`

use sluice::connectors::FileSource;
use sluice::StreamExecutionEnvironment;

fn main() -> sluice::Result<()> {
    let mut args = std::env::args().skip(1);
    let input = args.next().unwrap_or_else(|| {
        eprintln!("usage: wordcount FILE [PARALLELISM]");
        std::process::exit(2);
    });
    let parallelism =
        args.next().map(|p| p.parse().expect("PARALLELISM must be a number")).unwrap_or(2);

    // Nothing runs while the job is described: the calls below only build the graph.
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    env.from_source(FileSource::lines(input), "lines")
        // Lower-case runs of letters and digits, as Flink's word count splits them.
        .flat_map(|line: String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .map(|word| (word, 1u64))
        .key_by(|(word, _): &(String, u64)| word.clone())
        .sum(|(_, count)| count)
        // Each update shows the running count of one word.
        .map(|(word, count)| format!("{word}: {count}"))
        .print();

    // `execute` builds StreamGraph -> JobGraph -> ExecutionGraph and runs it on the mini-cluster.
    let result = env.execute("word count")?;
    eprintln!("finished in {:?}", result.duration);
    Ok(())
}
