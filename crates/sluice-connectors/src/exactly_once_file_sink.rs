//! A file sink with exactly-once output, as Flink's FileSink: records go to
//! a hidden in-progress file; at a checkpoint barrier it is flushed, synced
//! and renamed to a hidden pending file; when the checkpoint completes the
//! pending file is renamed to its final, visible name. A rename is atomic,
//! and committing an already committed file does nothing, so a restore can
//! commit again safely.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sluice_core::{Data, Result, SluiceError, StreamRecord};
use sluice_runtime::two_phase_commit::TwoPhaseCommitSink;
use sluice_runtime::RuntimeContext;

/// Encodes one record as one line (without the newline).
type Encoder<T> = fn(&T, &mut Vec<u8>) -> std::result::Result<(), String>;

/// Exactly-once NDJSON or text part files in a directory.
#[derive(Debug)]
pub struct ExactlyOnceFileSink<T> {
    dir: PathBuf,
    extension: &'static str,
    encode: Encoder<T>,
}

impl<T: Serialize> ExactlyOnceFileSink<T> {
    /// Each record as a JSON line.
    pub fn ndjson(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            extension: "ndjson",
            encode: |v, out| serde_json::to_writer(out, v).map_err(|e| e.to_string()),
        }
    }
}

/// An open part file.
pub struct FileTransaction {
    name: String,
    in_progress: PathBuf,
    out: BufWriter<File>,
    records: u64,
    line: Vec<u8>,
}

/// A pre-committed part file: hidden, complete, waiting for its checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFile {
    /// The hidden pending file.
    pub pending: PathBuf,
    /// Its final, visible name.
    pub committed: PathBuf,
}

impl<T> ExactlyOnceFileSink<T> {
    fn hidden(&self, name: &str, state: &str) -> PathBuf {
        self.dir.join(format!(".{name}.{state}"))
    }
}

impl<T: Data + Sync> TwoPhaseCommitSink<T> for ExactlyOnceFileSink<T> {
    type Transaction = FileTransaction;
    type Committable = PendingFile;

    fn recover(&self, ctx: &RuntimeContext) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| SluiceError::io("cannot create output directory", &self.dir, e))?;
        // In-progress files of this subtask from earlier runs were never pre-committed: drop them.
        let prefix = format!(".part-{}-", ctx.subtask_index);
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| SluiceError::io("cannot list output directory", &self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".inprogress") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn begin_transaction(
        &self,
        ctx: &RuntimeContext,
        after_checkpoint: u64,
    ) -> Result<FileTransaction> {
        // Names sort in the order the transactions began (wall-clock ms, then checkpoint), and
        // a random token keeps them unique across attempts and across processes resuming a job.
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let token: u32 = rand::rng().random();
        let name = format!(
            "part-{}-{millis:013}-{after_checkpoint:06}-{token:08x}.{}",
            ctx.subtask_index, self.extension
        );
        let in_progress = self.hidden(&name, "inprogress");
        let file = File::create(&in_progress)
            .map_err(|e| SluiceError::io("cannot create output file", &in_progress, e))?;
        Ok(FileTransaction {
            name,
            in_progress,
            out: BufWriter::new(file),
            records: 0,
            line: Vec::new(),
        })
    }

    fn write(&self, txn: &mut FileTransaction, records: Vec<StreamRecord<T>>) -> Result<()> {
        for r in records {
            txn.line.clear();
            (self.encode)(&r.value, &mut txn.line).map_err(|e| {
                SluiceError::Serialization(format!("{}: {e}", txn.in_progress.display()))
            })?;
            txn.line.push(b'\n');
            txn.out
                .write_all(&txn.line)
                .map_err(|e| SluiceError::io("cannot write output file", &txn.in_progress, e))?;
            txn.records += 1;
        }
        Ok(())
    }

    fn pre_commit(&self, txn: FileTransaction) -> Result<Option<PendingFile>> {
        let FileTransaction { name, in_progress, out, records, .. } = txn;
        let file = out.into_inner().map_err(|e| {
            SluiceError::io("cannot write output file", &in_progress, e.into_error())
        })?;
        if records == 0 {
            drop(file);
            let _ = std::fs::remove_file(&in_progress);
            return Ok(None);
        }
        file.sync_all().map_err(|e| SluiceError::io("cannot sync output file", &in_progress, e))?;
        let pending = self.hidden(&name, "pending");
        std::fs::rename(&in_progress, &pending)
            .map_err(|e| SluiceError::io("cannot pre-commit output file", &in_progress, e))?;
        Ok(Some(PendingFile { pending, committed: self.dir.join(name) }))
    }

    fn commit(&self, c: &PendingFile) -> Result<()> {
        match std::fs::rename(&c.pending, &c.committed) {
            Ok(()) => Ok(()),
            // Committed before the failure: nothing to do.
            Err(_) if c.committed.exists() => Ok(()),
            Err(e) => Err(SluiceError::io(
                "cannot commit output file (neither pending nor committed)",
                &c.pending,
                e,
            )),
        }
    }

    fn abort(&self, txn: FileTransaction) -> Result<()> {
        drop(txn.out);
        let _ = std::fs::remove_file(&txn.in_progress);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_become_visible_only_at_commit_and_committing_twice_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ExactlyOnceFileSink::<u32>::ndjson(dir.path());
        let ctx = RuntimeContext::for_test(0, 1);
        sink.recover(&ctx).unwrap();
        let mut txn = sink.begin_transaction(&ctx, 0).unwrap();
        sink.write(&mut txn, vec![StreamRecord::new(1), StreamRecord::new(2)]).unwrap();
        let visible = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| !n.starts_with('.'))
                .count()
        };
        let pending = sink.pre_commit(txn).unwrap().unwrap();
        assert_eq!(visible(), 0, "pre-committed is not visible");
        sink.commit(&pending).unwrap();
        sink.commit(&pending).unwrap();
        assert_eq!(visible(), 1);
        assert_eq!(std::fs::read_to_string(&pending.committed).unwrap(), "1\n2\n");
        let empty = sink.begin_transaction(&ctx, 1).unwrap();
        assert_eq!(sink.pre_commit(empty).unwrap(), None, "an empty transaction leaves no file");
    }
}
