//! Checkpoint storage on a real S3 API over HTTP: `scripts/test-s3` starts
//! moto's S3 server, creates a bucket and runs this with the `cloud` feature.
#![cfg(feature = "cloud")]

use sluice_checkpoint::checkpoint_storage::SubtaskState;
use sluice_checkpoint::{CheckpointMetadata, CheckpointStorage, OperatorSnapshot};

/// `s3://<bucket>/<prefix>` of the server `scripts/test-s3` started.
fn s3_url(prefix: &str) -> String {
    let bucket = std::env::var("SLUICE_TEST_S3_BUCKET")
        .expect("SLUICE_TEST_S3_BUCKET is unset: run these tests with scripts/test-s3");
    format!("s3://{bucket}/{prefix}")
}

fn metadata(id: u64) -> CheckpointMetadata {
    CheckpointMetadata {
        version: 0,
        job_name: "s3 job".into(),
        job_id: "job".into(),
        checkpoint_id: id,
        timestamp: id as i64,
        savepoint: false,
        operators: Vec::new(),
    }
}

fn state(subtask: u32, byte: u8) -> SubtaskState {
    SubtaskState {
        key: "sum".into(),
        parallelism: 2,
        subtask,
        snapshot: OperatorSnapshot {
            keyed: vec![(7, vec![byte; 1000])],
            operator: vec![vec![byte]],
        },
    }
}

#[test]
fn checkpoints_written_to_s3_read_back_and_only_those_with_metadata_exist() {
    let storage = CheckpointStorage::from_url(&s3_url("complete")).unwrap();
    for id in 1..=2 {
        let dir = CheckpointStorage::checkpoint_dir("job", id);
        storage
            .write_checkpoint(&dir, metadata(id), vec![state(0, id as u8), state(1, 9)])
            .unwrap();
    }
    // A checkpoint cut off before its _metadata does not exist.
    storage.put("job/chk-3/sum-0", vec![3; 10]).unwrap();
    let latest = storage.latest_checkpoint(Some("job")).unwrap().expect("a completed checkpoint");
    assert_eq!(latest.metadata.checkpoint_id, 2);
    assert_eq!(latest.operators["sum"][0].keyed, vec![(7, vec![2; 1000])]);
    assert_eq!(latest.operators["sum"][1].operator, vec![vec![9]]);
    // A second process sees the same checkpoints.
    let reopened = CheckpointStorage::from_url(&s3_url("complete")).unwrap();
    assert_eq!(reopened.latest_checkpoint(None).unwrap().unwrap().metadata.checkpoint_id, 2);
}

#[test]
fn a_corrupt_state_object_in_s3_falls_back_to_the_previous_checkpoint() {
    let storage = CheckpointStorage::from_url(&s3_url("corrupt")).unwrap();
    for id in 1..=2 {
        let dir = CheckpointStorage::checkpoint_dir("job", id);
        storage.write_checkpoint(&dir, metadata(id), vec![state(0, id as u8)]).unwrap();
    }
    storage.put("job/chk-2/sum-0", vec![0]).unwrap();
    let err = storage.read_checkpoint("job/chk-2").unwrap_err().to_string();
    assert!(err.contains("corrupt") && err.contains("sum-0"), "{err}");
    let latest = storage.latest_checkpoint(Some("job")).unwrap().unwrap();
    assert_eq!(latest.metadata.checkpoint_id, 1);
}

#[test]
fn old_checkpoints_in_s3_are_pruned_to_the_newest_two() {
    let storage = CheckpointStorage::from_url(&s3_url("pruned")).unwrap();
    for id in 1..=4 {
        let dir = CheckpointStorage::checkpoint_dir("job", id);
        storage.write_checkpoint(&dir, metadata(id), vec![state(0, id as u8)]).unwrap();
    }
    storage.prune("job").unwrap();
    let err = storage.read_checkpoint("job/chk-2").unwrap_err().to_string();
    assert!(err.contains("chk-2"), "{err}");
    assert_eq!(storage.read_checkpoint("job/chk-3").unwrap().metadata.checkpoint_id, 3);
    assert_eq!(storage.latest_checkpoint(None).unwrap().unwrap().metadata.checkpoint_id, 4);
}

#[test]
fn a_bucket_that_does_not_exist_is_an_error_naming_it() {
    let storage = CheckpointStorage::from_url("s3://no-such-sluice-bucket/chk").unwrap();
    let err = storage.write_checkpoint("job/chk-1", metadata(1), vec![state(0, 1)]).unwrap_err();
    let err = err.to_string();
    assert!(err.contains("no-such-sluice-bucket"), "{err}");
}
