//! Where checkpoints live: any `object_store` (a local directory by default,
//! `file://`, `memory://`). Layout `<job-id>/chk-<n>/<operator>-<subtask>`
//! plus `<job-id>/chk-<n>/_metadata`, written last: a checkpoint without a
//! valid `_metadata` does not exist. Every file carries an XXH3 checksum in
//! the metadata, and the metadata one of its own, so a corrupt or truncated
//! checkpoint is rejected and recovery falls back to the previous one.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use sluice_core::{Result, SluiceError};
use tracing::warn;
use xxhash_rust::xxh3::xxh3_64;

use crate::operator_snapshot::OperatorSnapshot;

const MAGIC: &[u8; 8] = b"SLUICECK";
const FORMAT_VERSION: u32 = 1;
/// Completed checkpoints kept per job (the newest, and one to fall back to).
pub const RETAINED_CHECKPOINTS: usize = 2;

/// One subtask's state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Subtask index at checkpoint time.
    pub subtask: u32,
    /// File name within the checkpoint directory.
    pub file: String,
    /// Bytes.
    pub size: u64,
    /// XXH3-64 of the bytes.
    pub checksum: u64,
}

/// The state of one operator (by uid) in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStateHandle {
    /// The operator's uid (or its generated id).
    pub key: String,
    /// Parallelism at checkpoint time.
    pub parallelism: u32,
    /// Key groups at checkpoint time.
    pub max_parallelism: u32,
    /// One file per subtask that had state.
    pub subtasks: Vec<StateFile>,
}

/// The `_metadata` of a checkpoint or savepoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// Format version.
    pub version: u32,
    /// The job's name.
    pub job_name: String,
    /// The job's id.
    pub job_id: String,
    /// Checkpoint id.
    pub checkpoint_id: u64,
    /// When it was triggered (ms since the epoch).
    pub timestamp: i64,
    /// Whether a user asked for it.
    pub savepoint: bool,
    /// State per operator.
    pub operators: Vec<OperatorStateHandle>,
}

/// A checkpoint read back: metadata and each operator's subtask snapshots.
#[derive(Debug)]
pub struct RestoredCheckpoint {
    /// Where it was read from (relative to the storage root).
    pub path: String,
    /// Its metadata.
    pub metadata: CheckpointMetadata,
    /// Operator key → snapshots of the subtasks at checkpoint time.
    pub operators: BTreeMap<String, Vec<OperatorSnapshot>>,
}

/// One subtask's snapshot of one operator, to be written.
#[derive(Debug)]
pub struct SubtaskState {
    /// Operator key (uid).
    pub key: String,
    /// Operator parallelism.
    pub parallelism: u32,
    /// Subtask index.
    pub subtask: u32,
    /// The state.
    pub snapshot: OperatorSnapshot,
}

/// Checkpoint storage on an object store.
#[derive(Clone)]
pub struct CheckpointStorage {
    store: Arc<dyn ObjectStore>,
    url: String,
    /// The path within the store that holds the checkpoints (cloud URLs: the key prefix).
    prefix: String,
}

impl std::fmt::Debug for CheckpointStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointStorage({})", self.url)
    }
}

/// Runs a storage call to completion on the calling thread. The cloud stores
/// do their HTTP on tokio, so with them calls go through one shared runtime.
#[cfg(feature = "cloud")]
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("checkpoint-io")
                .enable_all()
                .build()
                .expect("cannot start the checkpoint storage runtime")
        })
        .block_on(future)
}

/// Runs a storage call to completion on the calling thread.
#[cfg(not(feature = "cloud"))]
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

fn storage_error(what: String, e: impl std::fmt::Display) -> SluiceError {
    SluiceError::external("checkpoint storage", format!("{what}: {e}"))
}

impl CheckpointStorage {
    /// Storage at `url`: a directory path, `file:///path`, `memory://`, and
    /// with the `cloud` feature `s3://bucket/path`, `gs://bucket/path` or
    /// `az://container/path` (credentials from the environment, as the cloud SDKs read them).
    pub fn from_url(url: &str) -> Result<Self> {
        let local = |dir: &str| -> Result<Arc<dyn ObjectStore>> {
            std::fs::create_dir_all(dir)
                .map_err(|e| SluiceError::io("cannot create checkpoint directory", dir, e))?;
            let store = LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| storage_error(format!("cannot open {dir}"), e))?;
            Ok(Arc::new(store))
        };
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match url.split_once("://") {
            Some(("memory", _)) => (Arc::new(InMemory::new()), String::new()),
            Some(("file", dir)) => (local(dir)?, String::new()),
            None => (local(url)?, String::new()),
            Some((scheme, _)) => Self::cloud(url, scheme)?,
        };
        Ok(Self { store, url: url.to_string(), prefix })
    }

    #[cfg(feature = "cloud")]
    fn cloud(url: &str, scheme: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
        let parsed = url::Url::parse(url).map_err(|e| {
            SluiceError::Config(format!("checkpoint storage '{url}' is not a valid URL: {e}"))
        })?;
        let options = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
        let (store, path) = object_store::parse_url_opts(&parsed, options).map_err(|e| {
            SluiceError::Config(format!("checkpoint storage '{url}' (scheme '{scheme}'): {e}"))
        })?;
        // With the bucket (container) as the host, the prefix is the URL's
        // path; object_store's parser drops its first segment for `az://`.
        let prefix = match scheme {
            "s3" | "gs" | "az" => parsed.path().trim_matches('/').to_string(),
            _ => path.to_string(),
        };
        Ok((Arc::from(store), prefix))
    }

    #[cfg(not(feature = "cloud"))]
    fn cloud(url: &str, scheme: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
        Err(SluiceError::Config(format!(
            "checkpoint storage '{url}': scheme '{scheme}' needs Sluice built with the `cloud` feature, \
             which this build lacks; use a directory, file:// or memory://"
        )))
    }

    /// The object path of `relative` under this storage's prefix.
    fn path(&self, relative: &str) -> Path {
        match (self.prefix.is_empty(), relative.is_empty()) {
            (true, _) => Path::from(relative),
            (false, true) => Path::from(self.prefix.as_str()),
            (false, false) => Path::from(format!("{}/{relative}", self.prefix)),
        }
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes an object.
    pub fn put(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        block_on(self.store.put(&self.path(path), bytes.into()))
            .map(|_| ())
            .map_err(|e| storage_error(format!("cannot write {}/{path}", self.url), e))
    }

    /// Reads an object.
    pub fn get(&self, path: &str) -> Result<Vec<u8>> {
        let read = async {
            let r = self.store.get(&self.path(path)).await?;
            r.bytes().await
        };
        block_on(read)
            .map(|b| b.to_vec())
            .map_err(|e| storage_error(format!("cannot read {}/{path}", self.url), e))
    }

    /// Names of the "directories" directly under `prefix`.
    fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = (!prefix.is_empty() || !self.prefix.is_empty()).then(|| self.path(prefix));
        let listing = block_on(self.store.list_with_delimiter(prefix.as_ref()))
            .map_err(|e| storage_error(format!("cannot list {}", self.url), e))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Deletes every object under `prefix`.
    fn delete_dir(&self, prefix: &str) -> Result<()> {
        let paths: Vec<Path> = block_on(
            self.store.list(Some(&self.path(prefix))).map_ok(|m| m.location).try_collect(),
        )
        .map_err(|e| storage_error(format!("cannot list {}/{prefix}", self.url), e))?;
        for p in paths {
            block_on(self.store.delete(&p))
                .map_err(|e| storage_error(format!("cannot delete {p}"), e))?;
        }
        Ok(())
    }

    /// The directory of checkpoint `id` of job `job_id`.
    pub fn checkpoint_dir(job_id: &str, id: u64) -> String {
        format!("{job_id}/chk-{id}")
    }

    /// Writes the subtask states of a completed checkpoint, then its `_metadata`.
    /// Returns the bytes written.
    pub fn write_checkpoint(
        &self,
        dir: &str,
        mut metadata: CheckpointMetadata,
        states: Vec<SubtaskState>,
    ) -> Result<u64> {
        let join =
            |file: &str| if dir.is_empty() { file.to_string() } else { format!("{dir}/{file}") };
        let mut total = 0;
        let mut operators: BTreeMap<String, OperatorStateHandle> = BTreeMap::new();
        for s in states {
            let bytes = postcard::to_allocvec(&s.snapshot)?;
            let file = format!("{}-{}", s.key.replace('/', "_"), s.subtask);
            let handle = operators.entry(s.key.clone()).or_insert_with(|| OperatorStateHandle {
                key: s.key.clone(),
                parallelism: s.parallelism,
                max_parallelism: 0,
                subtasks: Vec::new(),
            });
            handle.subtasks.push(StateFile {
                subtask: s.subtask,
                file: file.clone(),
                size: bytes.len() as u64,
                checksum: xxh3_64(&bytes),
            });
            total += bytes.len() as u64;
            self.put(&join(&file), bytes)?;
        }
        metadata.version = FORMAT_VERSION;
        metadata.operators = operators.into_values().collect();
        let mut bytes = MAGIC.to_vec();
        bytes.extend(postcard::to_allocvec(&metadata)?);
        let checksum = xxh3_64(&bytes);
        bytes.extend(checksum.to_le_bytes());
        total += bytes.len() as u64;
        self.put(&join("_metadata"), bytes)?;
        Ok(total)
    }

    /// Reads a checkpoint or savepoint, checking every checksum.
    pub fn read_checkpoint(&self, dir: &str) -> Result<RestoredCheckpoint> {
        let corrupt = |what: String| {
            SluiceError::external(
                "checkpoint storage",
                format!("checkpoint {}/{dir} is corrupt: {what}", self.url),
            )
        };
        let join =
            |file: &str| if dir.is_empty() { file.to_string() } else { format!("{dir}/{file}") };
        let bytes = self.get(&join("_metadata"))?;
        if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt(
                "_metadata is not Sluice checkpoint metadata (or is truncated)".into(),
            ));
        }
        let (payload, tail) = bytes.split_at(bytes.len() - 8);
        if xxh3_64(payload).to_le_bytes() != tail {
            return Err(corrupt("_metadata checksum mismatch".into()));
        }
        let metadata: CheckpointMetadata = postcard::from_bytes(&payload[MAGIC.len()..])?;
        if metadata.version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                metadata.version
            )));
        }
        let mut operators = BTreeMap::new();
        for op in &metadata.operators {
            let mut snapshots = vec![OperatorSnapshot::default(); op.parallelism as usize];
            for f in &op.subtasks {
                let data = self.get(&join(&f.file))?;
                if data.len() as u64 != f.size || xxh3_64(&data) != f.checksum {
                    return Err(corrupt(format!(
                        "state file {} fails its checksum (truncated or altered)",
                        f.file
                    )));
                }
                if let Some(slot) = snapshots.get_mut(f.subtask as usize) {
                    *slot = postcard::from_bytes(&data)?;
                }
            }
            operators.insert(op.key.clone(), snapshots);
        }
        Ok(RestoredCheckpoint { path: dir.to_string(), metadata, operators })
    }

    /// Completed checkpoints of `job_id`, newest first.
    fn checkpoint_ids(&self, job_id: &str) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = self
            .list_dirs(job_id)?
            .iter()
            .filter_map(|d| d.strip_prefix("chk-")?.parse().ok())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// The newest readable checkpoint of any job under this storage (of
    /// `job_id` if given); corrupt ones are skipped with a log line.
    pub fn latest_checkpoint(&self, job_id: Option<&str>) -> Result<Option<RestoredCheckpoint>> {
        let jobs = match job_id {
            Some(j) => vec![j.to_string()],
            None => self.list_dirs("")?,
        };
        let mut best: Option<RestoredCheckpoint> = None;
        for job in jobs {
            for id in self.checkpoint_ids(&job)? {
                let dir = Self::checkpoint_dir(&job, id);
                match self.read_checkpoint(&dir) {
                    Ok(c) => {
                        if best.as_ref().is_none_or(|b| c.metadata.timestamp > b.metadata.timestamp)
                        {
                            best = Some(c);
                        }
                        break;
                    }
                    Err(e) => {
                        warn!(checkpoint = %dir, error = %e.report(), "skipping checkpoint that cannot be read; falling back to the previous one")
                    }
                }
            }
        }
        Ok(best)
    }

    /// Deletes all but the newest [`RETAINED_CHECKPOINTS`] checkpoints of `job_id`.
    pub fn prune(&self, job_id: &str) -> Result<()> {
        for id in self.checkpoint_ids(job_id)?.into_iter().skip(RETAINED_CHECKPOINTS) {
            self.delete_dir(&Self::checkpoint_dir(job_id, id))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(id: u64, ts: i64) -> CheckpointMetadata {
        CheckpointMetadata {
            version: 0,
            job_name: "j".into(),
            job_id: "job".into(),
            checkpoint_id: id,
            timestamp: ts,
            savepoint: false,
            operators: Vec::new(),
        }
    }

    fn state(key: &str, subtask: u32, byte: u8) -> SubtaskState {
        SubtaskState {
            key: key.into(),
            parallelism: 2,
            subtask,
            snapshot: OperatorSnapshot {
                keyed: vec![(byte as u32, vec![byte])],
                operator: vec![vec![byte]],
            },
        }
    }

    #[test]
    fn a_written_checkpoint_reads_back_with_every_subtask_state() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::from_url(dir.path().to_str().unwrap()).unwrap();
        storage
            .write_checkpoint(
                "job/chk-1",
                metadata(1, 10),
                vec![state("sum", 0, 1), state("sum", 1, 2)],
            )
            .unwrap();
        let c = storage.read_checkpoint("job/chk-1").unwrap();
        assert_eq!(c.metadata.checkpoint_id, 1);
        assert_eq!(c.operators["sum"][1].operator, vec![vec![2]]);
        assert!(
            dir.path().join("job/chk-1/_metadata").exists(),
            "the layout is <job-id>/chk-<n>/_metadata"
        );
    }

    #[test]
    fn a_checkpoint_without_metadata_does_not_exist_and_a_corrupt_one_falls_back_to_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            CheckpointStorage::from_url(&format!("file://{}", dir.path().display())).unwrap();
        storage.write_checkpoint("job/chk-1", metadata(1, 10), vec![state("sum", 0, 1)]).unwrap();
        storage.write_checkpoint("job/chk-2", metadata(2, 20), vec![state("sum", 0, 2)]).unwrap();
        // chk-3 never got its _metadata: it does not exist.
        storage.put("job/chk-3/sum-0", vec![9]).unwrap();
        assert_eq!(storage.latest_checkpoint(None).unwrap().unwrap().metadata.checkpoint_id, 2);
        // Truncate chk-2's state file: rejected by checksum, chk-1 is used.
        std::fs::write(dir.path().join("job/chk-2/sum-0"), [0u8]).unwrap();
        let err = storage.read_checkpoint("job/chk-2").unwrap_err().to_string();
        assert!(err.contains("corrupt") && err.contains("sum-0"), "{err}");
        assert_eq!(
            storage.latest_checkpoint(Some("job")).unwrap().unwrap().metadata.checkpoint_id,
            1
        );
        // Flip a byte of chk-1's metadata: nothing readable is left.
        let meta = dir.path().join("job/chk-1/_metadata");
        let mut bytes = std::fs::read(&meta).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0xff;
        std::fs::write(&meta, bytes).unwrap();
        assert!(storage.latest_checkpoint(None).unwrap().is_none());
    }

    #[test]
    fn old_checkpoints_are_pruned_to_the_retained_number() {
        let storage = CheckpointStorage::from_url("memory://").unwrap();
        for id in 1..=4 {
            storage
                .write_checkpoint(
                    &CheckpointStorage::checkpoint_dir("job", id),
                    metadata(id, id as i64),
                    vec![],
                )
                .unwrap();
        }
        storage.prune("job").unwrap();
        assert_eq!(storage.checkpoint_ids("job").unwrap(), vec![4, 3]);
    }

    #[test]
    #[cfg(not(feature = "cloud"))]
    fn cloud_urls_without_cloud_support_are_refused_by_name() {
        let err = CheckpointStorage::from_url("s3://bucket/checkpoints").unwrap_err().to_string();
        assert!(
            err.contains("s3://bucket/checkpoints")
                && err.contains("'s3'")
                && err.contains("cloud"),
            "{err}"
        );
    }
}
