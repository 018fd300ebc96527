//! Word count over a text file, printed as (word, count) updates.
//!
//! Run: `cargo run --release --example wordcount -- words.txt [parallelism]`

use sluice::jobs::wordcount::{word_count, WordCountOptions};
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
    word_count(&env, input.into(), &WordCountOptions::default())
        // Each update shows the running count of one word.
        .map(|(word, count)| format!("{word}: {count}"))
        .print();

    // `execute` builds StreamGraph -> JobGraph -> ExecutionGraph and runs it on the mini-cluster.
    let result = env.execute("word count")?;
    eprintln!("finished in {:?}", result.duration);
    Ok(())
}
