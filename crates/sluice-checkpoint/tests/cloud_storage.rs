//! Checkpoint storage on real cloud storage APIs over HTTP:
//! `scripts/test-cloud-storage` starts moto's S3 server and Azurite, creates
//! a bucket in each, and runs this with the `cloud` feature once per store.
#![cfg(feature = "cloud")]

use sluice_checkpoint::checkpoint_storage::SubtaskState;
use sluice_checkpoint::{CheckpointMetadata, CheckpointStorage, OperatorSnapshot};

/// The bucket under test, as `s3://bucket` or `az://container`.
fn bucket_url() -> String {
    std::env::var("SLUICE_TEST_CLOUD_URL")
        .expect("SLUICE_TEST_CLOUD_URL is unset: run these tests with scripts/test-cloud-storage")
}

/// `<bucket url>/<prefix>`.
fn store_url(prefix: &str) -> String {
    format!("{}/{prefix}", bucket_url())
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
fn checkpoints_written_to_the_store_read_back_and_only_those_with_metadata_exist() {
    let storage = CheckpointStorage::from_url(&store_url("complete")).unwrap();
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
    let reopened = CheckpointStorage::from_url(&store_url("complete")).unwrap();
    assert_eq!(reopened.latest_checkpoint(None).unwrap().unwrap().metadata.checkpoint_id, 2);
}

#[test]
fn a_corrupt_state_object_falls_back_to_the_previous_checkpoint() {
    let storage = CheckpointStorage::from_url(&store_url("corrupt")).unwrap();
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
fn old_checkpoints_in_the_store_are_pruned_to_the_newest_two() {
    let storage = CheckpointStorage::from_url(&store_url("pruned")).unwrap();
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
    let scheme = bucket_url().split_once("://").expect("a URL").0.to_string();
    let storage = CheckpointStorage::from_url(&format!("{scheme}://no-such-sluice-bucket/chk"));
    let storage = storage.unwrap();
    let err = storage.write_checkpoint("job/chk-1", metadata(1), vec![state(0, 1)]).unwrap_err();
    let err = err.to_string();
    assert!(err.contains("no-such-sluice-bucket"), "{err}");
}

#[test]
fn storages_at_different_paths_of_one_bucket_do_not_see_each_other() {
    let a = CheckpointStorage::from_url(&store_url("tenants/a")).unwrap();
    let b = CheckpointStorage::from_url(&store_url("tenants/b")).unwrap();
    a.write_checkpoint("job/chk-5", metadata(5), vec![state(0, 5)]).unwrap();
    b.write_checkpoint("job/chk-1", metadata(1), vec![state(0, 1)]).unwrap();
    assert_eq!(a.latest_checkpoint(None).unwrap().unwrap().metadata.checkpoint_id, 5);
    assert_eq!(b.latest_checkpoint(None).unwrap().unwrap().metadata.checkpoint_id, 1);
    b.prune("job").unwrap();
    assert!(a.read_checkpoint("job/chk-5").is_ok());
}
