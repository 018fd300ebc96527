//! Bad input gets a clear error naming the input and what is wrong, and a
//! failing task fails the job instead of hanging it.

use std::io::Write;

use sluice::connectors::{DataGeneratorSource, FileSource};
use sluice::{Collector, Context, ProcessFunction, SluiceError, StreamExecutionEnvironment};
use sluice_core::{ErrorOrigin, FunctionResult};

fn execute_err(env: &StreamExecutionEnvironment) -> SluiceError {
    env.execute("failing job").expect_err("the job must fail")
}

#[test]
fn parallelism_zero_is_refused_naming_the_operator() {
    let env = StreamExecutionEnvironment::new();
    env.from_sequence(10).map(|i| i).name("double").set_parallelism(0).discard();
    let err = execute_err(&env).report().to_string();
    assert!(err.contains("'double'") && err.contains("parallelism 0"), "{err}");
}

#[test]
fn parallelism_above_max_parallelism_is_refused() {
    let env = StreamExecutionEnvironment::new();
    env.set_max_parallelism(4);
    env.from_sequence(10).set_parallelism(5).discard();
    let err = execute_err(&env).report().to_string();
    assert!(err.contains("parallelism 5") && err.contains("1..=4"), "{err}");
}

#[test]
fn a_default_parallelism_of_zero_is_a_configuration_error() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(0);
    env.from_sequence(10).discard();
    let err = execute_err(&env);
    assert!(matches!(err, SluiceError::Config(_) | SluiceError::InvalidJob(_)), "{err}");
    assert!(err.to_string().contains("parallelism 0"), "{err}");
}

#[test]
fn a_missing_input_file_names_the_path() {
    let env = StreamExecutionEnvironment::new();
    env.read_text_file("/definitely/not/here.txt").discard();
    let err = execute_err(&env);
    let text = err.report().to_string();
    assert!(text.contains("/definitely/not/here.txt") && text.contains("No such file"), "{text}");
    assert_eq!(err.origin(), ErrorOrigin::External);
}

#[test]
fn an_unreadable_entry_in_an_input_directory_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "x\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("b.txt")).unwrap();
    let env = StreamExecutionEnvironment::new();
    env.read_text_file(dir.path()).discard();
    let err = execute_err(&env).report().to_string();
    assert!(err.contains("b.txt") && err.contains("cannot read input path"), "{err}");
}

#[test]
fn a_line_that_is_not_utf8_fails_with_file_and_line_number() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"fine\nalso fine\n\xff\xfe broken\n").unwrap();
    let env = StreamExecutionEnvironment::new();
    env.read_text_file(file.path()).discard();
    let err = execute_err(&env).report().to_string();
    assert!(
        err.contains(&format!("{} line 3", file.path().display())) && err.contains("not UTF-8"),
        "{err}"
    );
}

#[test]
fn a_malformed_ndjson_record_fails_with_file_line_and_reason() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{{\"id\": 1}}\n{{\"id\": \"one\"}}").unwrap();
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Event {
        id: u64,
    }
    let env = StreamExecutionEnvironment::new();
    env.from_source(FileSource::<Event>::ndjson(file.path()), "events").discard();
    let err = execute_err(&env);
    let text = err.report().to_string();
    assert!(text.contains("line 2") && text.contains("invalid type"), "{text}");
    assert_eq!(err.origin(), ErrorOrigin::User);
}

#[test]
fn a_socket_that_cannot_connect_names_the_address() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let env = StreamExecutionEnvironment::new();
    env.socket_text_stream("127.0.0.1", port).discard();
    let err = execute_err(&env).report().to_string();
    assert!(
        err.contains(&format!("socket source 127.0.0.1:{port}")) && err.contains("cannot connect"),
        "{err}"
    );
}

#[test]
fn a_socket_source_cannot_run_in_parallel() {
    let env = StreamExecutionEnvironment::new();
    env.socket_text_stream("127.0.0.1", 9).set_parallelism(2).discard();
    let err = execute_err(&env).report().to_string();
    assert!(err.contains("maximum of 1"), "{err}");
}

#[test]
fn a_job_without_a_sink_is_refused() {
    let env = StreamExecutionEnvironment::new();
    env.from_sequence(10).map(|i| i + 1);
    let err = execute_err(&env).report().to_string();
    assert!(err.contains("no sink"), "{err}");
}

#[test]
fn an_environment_cannot_execute_twice() {
    let env = StreamExecutionEnvironment::new();
    env.from_sequence(10).discard();
    env.execute("first").unwrap();
    let err = env.execute("second").unwrap_err().to_string();
    assert!(err.contains("already executed job 'first'"), "{err}");
}

#[test]
fn forward_between_different_parallelisms_is_refused() {
    let env = StreamExecutionEnvironment::new();
    env.from_sequence(10).set_parallelism(2).forward().map(|i| i).set_parallelism(3).discard();
    let err = execute_err(&env).report().to_string();
    assert!(err.contains("forward partitioning") && err.contains("rebalance()"), "{err}");
}

#[test]
fn a_panic_in_a_user_function_fails_the_job_naming_operator_subtask_and_cause() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    env.from_sequence(1000)
        .map(|i| {
            assert!(i != 777, "record {i} is cursed");
            i
        })
        .name("checker")
        .discard();
    let err = execute_err(&env);
    let text = err.report().to_string();
    assert!(text.contains("operator 'checker'") && text.contains("record 777 is cursed"), "{text}");
    // 777 falls in the second half of the sequence, read by subtask 2 of 2.
    assert!(text.contains("subtask 2/2"), "{text}");
    assert_eq!(err.origin(), ErrorOrigin::User);
}

#[test]
fn a_failure_behind_a_network_edge_cancels_an_unbounded_source() {
    let env = StreamExecutionEnvironment::new();
    env.from_source(DataGeneratorSource::new(|i| i, None), "endless")
        .key_by(|i| i % 10)
        .reduce(|a, b| {
            assert!(b < 5_000, "too many");
            a + b
        })
        .set_parallelism(2)
        .discard();
    let err = execute_err(&env).report().to_string();
    assert!(err.contains("operator 'Keyed Reduce'") && err.contains("too many"), "{err}");
}

/// Fails on a given record by returning an error.
#[derive(Clone)]
struct RejectNegative;

impl ProcessFunction<i64, i64> for RejectNegative {
    fn process_element(
        &mut self,
        value: i64,
        _ctx: &Context,
        out: &mut Collector<'_, i64>,
    ) -> FunctionResult {
        if value < 0 {
            return Err(format!("negative value {value}").into());
        }
        out.collect(value);
        Ok(())
    }
}

#[test]
fn an_error_returned_by_a_process_function_fails_the_job_with_its_message() {
    let env = StreamExecutionEnvironment::new();
    env.from_collection(vec![1i64, 2, -3]).process(RejectNegative).discard();
    let err = execute_err(&env).report().to_string();
    assert!(
        err.contains("operator 'Process' in subtask 1/1") && err.contains("negative value -3"),
        "{err}"
    );
}

#[test]
fn a_datagen_rate_must_be_positive() {
    let err = DataGeneratorSource::new(|i| i, Some(10)).with_rate(0.0).err().unwrap().to_string();
    assert!(err.contains("positive"), "{err}");
}
