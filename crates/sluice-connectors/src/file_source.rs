//! Reads text files line by line, as plain lines or as newline-delimited
//! JSON. The path is a file or a directory (read recursively, skipping
//! hidden files and files starting with `_`, as Flink does); each file is
//! a split. A line that cannot be decoded fails the job with its file and
//! line number, unless the source's [`DecodeErrorPolicy`] says to skip it
//! or send it to the decode-failures side output: nothing is dropped silently.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_core::{Data, Result, SluiceError};
use sluice_runtime::source::{
    Boundedness, InputStatus, Source, SourceOutput, SourceReader, SourceSplit,
};
use sluice_runtime::RuntimeContext;
use sluice_runtime::{DecodeErrorPolicy, RecordLocation};

/// Turns one line (without its newline) into a record.
type Decoder<T> = fn(&str) -> std::result::Result<T, String>;

/// A file or directory of text or NDJSON files.
#[derive(Debug)]
pub struct FileSource<T> {
    path: PathBuf,
    decode: Decoder<T>,
    skip_empty: bool,
    on_decode_error: DecodeErrorPolicy,
}

impl FileSource<String> {
    /// Every line of the files under `path`, as a `String`.
    pub fn lines(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            decode: |l| Ok(l.to_string()),
            skip_empty: false,
            on_decode_error: DecodeErrorPolicy::Fail,
        }
    }
}

impl<T: DeserializeOwned> FileSource<T> {
    /// Every line of the files under `path` parsed as JSON into `T`; empty lines are skipped.
    pub fn ndjson(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            decode: |l| serde_json::from_str(l).map_err(|e| e.to_string()),
            skip_empty: true,
            on_decode_error: DecodeErrorPolicy::Fail,
        }
    }
}

impl<T> FileSource<T> {
    /// Every non-empty line of the files under `path` turned into a record
    /// by `decode`, whose error says what is wrong with the line.
    pub fn with_decoder(
        path: impl Into<PathBuf>,
        decode: fn(&str) -> std::result::Result<T, String>,
    ) -> Self {
        Self {
            path: path.into(),
            decode,
            skip_empty: true,
            on_decode_error: DecodeErrorPolicy::Fail,
        }
    }

    /// What to do with a line that cannot be decoded (not UTF-8, or refused
    /// by the decoder): fail the job (the default), skip it, or send it to
    /// the decode-failures side output.
    pub fn on_decode_error(mut self, policy: DecodeErrorPolicy) -> Self {
        self.on_decode_error = policy;
        self
    }
}

/// One file, and how far it has been read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileSplit {
    /// The file.
    pub path: PathBuf,
    /// Byte offset of the next line.
    pub offset: u64,
    /// Number of the next line, from 1.
    pub line: u64,
}

impl SourceSplit for FileSplit {
    fn split_id(&self) -> String {
        self.path.display().to_string()
    }
}

fn list_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta =
        std::fs::metadata(path).map_err(|e| SluiceError::io("cannot read input path", path, e))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| SluiceError::io("cannot list input directory", path, e))?
        .map(|e| {
            e.map(|e| e.path())
                .map_err(|err| SluiceError::io("cannot list input directory", path, err))
        })
        .collect::<Result<_>>()?;
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') || n.starts_with('_'));
        if !hidden {
            list_files(&entry, out)?;
        }
    }
    Ok(())
}

impl<T: Data> Source<T> for FileSource<T> {
    type Split = FileSplit;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_splits(&self, _parallelism: usize) -> Result<Vec<FileSplit>> {
        let mut files = Vec::new();
        list_files(&self.path, &mut files)?;
        for f in &files {
            // Fail before the job starts if a file exists but cannot be opened.
            File::open(f).map_err(|e| SluiceError::io("cannot open input file", f, e))?;
        }
        Ok(files.into_iter().map(|path| FileSplit { path, offset: 0, line: 1 }).collect())
    }

    fn create_reader(&self, _ctx: &RuntimeContext) -> Result<Box<dyn SourceReader<T, FileSplit>>> {
        Ok(Box::new(FileReader {
            decode: self.decode,
            skip_empty: self.skip_empty,
            on_decode_error: self.on_decode_error,
            pending: Vec::new(),
            current: None,
            buf: Vec::with_capacity(256),
            files_opened: 0,
        }))
    }
}

struct FileReader<T> {
    decode: Decoder<T>,
    skip_empty: bool,
    on_decode_error: DecodeErrorPolicy,
    pending: Vec<FileSplit>,
    current: Option<(FileSplit, BufReader<File>, u32)>,
    buf: Vec<u8>,
    files_opened: u32,
}

impl<T: Data> SourceReader<T, FileSplit> for FileReader<T> {
    fn add_splits(&mut self, splits: Vec<FileSplit>) -> Result<()> {
        self.pending.splice(0..0, splits.into_iter().rev());
        Ok(())
    }

    fn snapshot_state(&mut self) -> Result<Vec<FileSplit>> {
        // The file being read, at the offset after the last line emitted, then the ones not started.
        let current = self.current.iter().map(|(split, _, _)| split.clone());
        Ok(current.chain(self.pending.iter().rev().cloned()).collect())
    }

    fn poll_next(&mut self, output: &mut SourceOutput<T>) -> Result<InputStatus> {
        while !output.is_full() {
            let (split, reader, _) = match &mut self.current {
                Some(c) => c,
                None => {
                    let Some(split) = self.pending.pop() else {
                        return Ok(InputStatus::EndOfInput);
                    };
                    let file = File::open(&split.path)
                        .map_err(|e| SluiceError::io("cannot open input file", &split.path, e))?;
                    let mut reader = BufReader::with_capacity(1 << 20, file);
                    if split.offset > 0 {
                        use std::io::Seek;
                        reader.seek(std::io::SeekFrom::Start(split.offset)).map_err(|e| {
                            SluiceError::io("cannot seek in input file", &split.path, e)
                        })?;
                    }
                    // Each file is a split of its own for watermark generation.
                    let id = self.files_opened;
                    self.files_opened += 1;
                    output.set_split(id);
                    self.current.insert((split, reader, id))
                }
            };
            let buffered = reader
                .fill_buf()
                .map_err(|e| SluiceError::io("cannot read input file", &split.path, e))?;
            if buffered.is_empty() {
                if let Some((_, _, id)) = self.current.take() {
                    output.finish_split(id);
                }
                continue;
            }
            // Decode the line where it sits in the read buffer; only a line
            // that runs past the buffer's end is gathered into `self.buf`.
            let (mut line, n, in_place) = match memchr::memchr(b'\n', buffered) {
                Some(i) => (&buffered[..i + 1], i + 1, true),
                None => {
                    self.buf.clear();
                    let n = reader
                        .read_until(b'\n', &mut self.buf)
                        .map_err(|e| SluiceError::io("cannot read input file", &split.path, e))?;
                    (&self.buf[..], n, false)
                }
            };
            let (line_no, line_offset) = (split.line, split.offset);
            split.offset += n as u64;
            split.line += 1;
            if let Some(l) = line.strip_suffix(b"\n") {
                line = l.strip_suffix(b"\r").unwrap_or(l);
            }
            let decoded = match std::str::from_utf8(line) {
                Err(e) => Err(format!("not UTF-8: {e}")),
                Ok(text) if self.skip_empty && text.trim().is_empty() => Ok(None),
                Ok(text) => (self.decode)(text).map(Some),
            };
            match decoded {
                Ok(Some(record)) => output.collect(record),
                Ok(None) => {}
                Err(reason) => {
                    let location = RecordLocation::File {
                        path: split.path.clone(),
                        line: line_no,
                        offset: line_offset,
                    };
                    output.decode_error(self.on_decode_error, location, reason, line)?;
                }
            }
            if in_place {
                reader.consume(n);
            }
        }
        Ok(InputStatus::MoreAvailable)
    }
}
