//! Word count is correct at every parallelism, against a count made in the test.

use std::collections::HashMap;
use std::io::Write;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice::{DataPlane, StreamExecutionEnvironment};
use sluice_cli::jobs::wordcount::{tokenize, word_count, FinalCounts, WordCountOptions};

const VOCABULARY: [&str; 12] = [
    "stream", "batch", "Flink", "sluice", "key", "group", "window", "state", "barrier", "sink",
    "source", "a",
];

/// A file of `lines` random lines (seeded), and the reference count of its words.
fn corpus(lines: usize, seed: u64) -> (tempfile::NamedTempFile, HashMap<String, u64>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut reference = HashMap::new();
    for _ in 0..lines {
        let n = rng.random_range(0..12);
        let words: Vec<&str> =
            (0..n).map(|_| VOCABULARY[rng.random_range(0..VOCABULARY.len())]).collect();
        let line = words.join(if rng.random_bool(0.5) { " " } else { ", " });
        for w in &words {
            *reference.entry(w.to_lowercase()).or_insert(0) += 1;
        }
        writeln!(file, "{line}").unwrap();
    }
    (file, reference)
}

fn run_word_count(path: &std::path::Path, parallelism: usize) -> (HashMap<String, u64>, usize) {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    let counts = FinalCounts::default();
    let updates = word_count(&env, path.to_path_buf(), &WordCountOptions::default());
    updates.sink_to(counts.clone());
    let all_updates = updates.collect();
    env.execute("word count").unwrap();
    (counts.sorted().into_iter().collect(), all_updates.len())
}

#[test]
fn word_count_matches_the_reference_at_parallelism_1_2_and_4() {
    let (file, reference) = corpus(5_000, 7);
    let total_words: u64 = reference.values().sum();
    for parallelism in [1, 2, 4] {
        let (counts, updates) = run_word_count(file.path(), parallelism);
        assert_eq!(counts, reference, "parallelism {parallelism}");
        assert_eq!(
            updates as u64, total_words,
            "one rolling update per word, parallelism {parallelism}"
        );
    }
}

#[test]
fn word_count_is_the_same_on_one_or_several_task_managers() {
    let (file, reference) = corpus(2_000, 3);
    let shapes =
        [(1, 4, DataPlane::InMemory), (2, 2, DataPlane::InMemory), (4, 1, DataPlane::InMemory)];
    let over_tcp = [(2, 2, DataPlane::Tcp), (4, 1, DataPlane::Tcp)];
    for (task_managers, slots, data_plane) in shapes.into_iter().chain(over_tcp) {
        let env = StreamExecutionEnvironment::new();
        env.set_parallelism(4).set_mini_cluster_with(task_managers, slots, data_plane);
        let counts = FinalCounts::default();
        word_count(&env, file.path().to_path_buf(), &WordCountOptions::default())
            .sink_to(counts.clone());
        env.execute("word count").unwrap();
        let got: HashMap<String, u64> = counts.sorted().into_iter().collect();
        assert_eq!(got, reference, "{task_managers} TaskManagers x {slots} slots, {data_plane:?}");
    }
}

#[test]
fn rolling_counts_of_a_word_go_up_by_one_per_occurrence() {
    let (file, reference) = corpus(500, 11);
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(3);
    let updates =
        word_count(&env, file.path().to_path_buf(), &WordCountOptions::default()).collect();
    env.execute("word count").unwrap();
    let mut per_word: HashMap<String, Vec<u64>> = HashMap::new();
    for (w, c) in updates.take() {
        per_word.entry(w).or_default().push(c);
    }
    for (w, counts) in per_word {
        let expected: Vec<u64> = (1..=reference[&w]).collect();
        assert_eq!(counts, expected, "word {w}");
    }
}

#[test]
fn tokenize_lowercases_and_splits_on_non_alphanumerics() {
    assert_eq!(tokenize("The end, the END!  x1"), vec!["the", "end", "the", "end", "x1"]);
    assert!(tokenize(" ,; ").is_empty());
}
