//! Writes records to files in a directory, one part file per subtask
//! (`part-<subtask>.txt` or `.ndjson`), as text lines or as JSON lines.

use std::fmt::Display;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Serialize;
use sluice_core::{Data, Result, SluiceError, StreamRecord};
use sluice_runtime::{RuntimeContext, Sink, SinkWriter};

/// Encodes one record as one line (without the newline).
type Encoder<T> = fn(&T, &mut Vec<u8>) -> std::result::Result<(), String>;

/// A directory of part files.
#[derive(Debug)]
pub struct FileSink<T> {
    dir: PathBuf,
    extension: &'static str,
    encode: Encoder<T>,
}

impl<T: Display> FileSink<T> {
    /// Each record's `Display` form as a line.
    pub fn text(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            extension: "txt",
            encode: |v, out| write!(out, "{v}").map_err(|e| e.to_string()),
        }
    }
}

impl<T: Serialize> FileSink<T> {
    /// Each record as a JSON line.
    pub fn ndjson(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            extension: "ndjson",
            encode: |v, out| serde_json::to_writer(out, v).map_err(|e| e.to_string()),
        }
    }
}

impl<T: Data + Sync> Sink<T> for FileSink<T> {
    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Box<dyn SinkWriter<T>>> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| SluiceError::io("cannot create output directory", &self.dir, e))?;
        let path = self.dir.join(format!("part-{}.{}", ctx.subtask_index, self.extension));
        let file = File::create(&path)
            .map_err(|e| SluiceError::io("cannot create output file", &path, e))?;
        Ok(Box::new(FileWriter {
            path,
            out: BufWriter::new(file),
            encode: self.encode,
            line: Vec::new(),
        }))
    }
}

struct FileWriter<T> {
    path: PathBuf,
    out: BufWriter<File>,
    encode: Encoder<T>,
    line: Vec<u8>,
}

impl<T: Send> SinkWriter<T> for FileWriter<T> {
    fn write_batch(&mut self, records: Vec<StreamRecord<T>>) -> Result<()> {
        for r in records {
            self.line.clear();
            (self.encode)(&r.value, &mut self.line)
                .map_err(|e| SluiceError::Serialization(format!("{}: {e}", self.path.display())))?;
            self.line.push(b'\n');
            self.out
                .write_all(&self.line)
                .map_err(|e| SluiceError::io("cannot write output file", &self.path, e))?;
        }
        Ok(())
    }

    fn flush(&mut self, _end_of_input: bool) -> Result<()> {
        self.out.flush().map_err(|e| SluiceError::io("cannot write output file", &self.path, e))
    }
}
