//! Reads text files line by line, as plain lines, NDJSON, or through any
//! line decoder. The path is a file or a directory (read recursively,
//! skipping hidden files and files starting with `_`, as Flink does).
//!
//! Files are cut into byte-range splits, so one large file is read by
//! several subtasks: a split owns every line that *starts* inside its range
//! — its reader skips the partial line at its start and reads past its end
//! to finish the last line — so each line is read exactly once whatever the
//! boundaries. Readers ask the [`FileSplitEnumerator`] for splits when they
//! run out (pull, so fast readers take more), files in order of modification
//! time, then name. Monitored continuously, the enumerator lists the
//! directory every interval and turns each new file into splits once it is
//! complete; the files already split are part of its checkpointed state, so
//! each file is read once across failures and restores.
//!
//! A line that cannot be decoded fails the job with its file and line
//! number, unless the source's [`DecodeErrorPolicy`] says to skip it or send
//! it to the decode-failures side output: nothing is dropped silently.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use sluice_core::{Data, Result, SluiceError};
use sluice_runtime::source::{Boundedness, InputStatus, Source, SourceOutput, SourceReader};
use sluice_runtime::split_enumerator::SplitEnumerator;
use sluice_runtime::{DecodeErrorPolicy, RecordLocation, RuntimeContext};

pub use crate::file_split_enumerator::{
    byte_range_splits, list_files, EnumeratorState, FileCompletion, FileSplit, FileSplitEnumerator,
    FileStatus, DEFAULT_SPLIT_SIZE,
};

/// Turns one line (without its newline) into a record.
type Decoder<T> = fn(&str) -> std::result::Result<T, String>;

/// A file or directory of text or NDJSON files.
#[derive(Debug)]
pub struct FileSource<T> {
    path: PathBuf,
    decode: Decoder<T>,
    skip_empty: bool,
    on_decode_error: DecodeErrorPolicy,
    split_size: u64,
    monitor: Option<(Duration, FileCompletion)>,
}

impl FileSource<String> {
    /// Every line of the files under `path`, as a `String`.
    pub fn lines(path: impl Into<PathBuf>) -> Self {
        Self::new(path.into(), |l| Ok(l.to_string()), false)
    }
}

impl<T: DeserializeOwned> FileSource<T> {
    /// Every line of the files under `path` parsed as JSON into `T`; empty lines are skipped.
    pub fn ndjson(path: impl Into<PathBuf>) -> Self {
        Self::new(path.into(), |l| serde_json::from_str(l).map_err(|e| e.to_string()), true)
    }
}

impl<T> FileSource<T> {
    fn new(path: PathBuf, decode: Decoder<T>, skip_empty: bool) -> Self {
        Self {
            path,
            decode,
            skip_empty,
            on_decode_error: DecodeErrorPolicy::Fail,
            split_size: DEFAULT_SPLIT_SIZE,
            monitor: None,
        }
    }

    /// Every non-empty line of the files under `path` turned into a record
    /// by `decode`, whose error says what is wrong with the line.
    pub fn with_decoder(
        path: impl Into<PathBuf>,
        decode: fn(&str) -> std::result::Result<T, String>,
    ) -> Self {
        Self::new(path.into(), decode, true)
    }

    /// What to do with a line that cannot be decoded (not UTF-8, or refused
    /// by the decoder): fail the job (the default), skip it, or send it to
    /// the decode-failures side output.
    pub fn on_decode_error(mut self, policy: DecodeErrorPolicy) -> Self {
        self.on_decode_error = policy;
        self
    }

    /// The largest byte range of one split (default 64 MiB). A file is cut
    /// finer when that gives each reader several splits of it, down to 1 MiB.
    pub fn split_size(mut self, bytes: u64) -> Self {
        self.split_size = bytes.max(1);
        self
    }

    /// Keeps watching the directory: every `interval` new files (also in
    /// subdirectories) are read once they are complete — by default when
    /// they did not change over one interval. The source never ends.
    pub fn monitor_continuously(mut self, interval: Duration) -> Self {
        self.monitor = Some((interval, FileCompletion::Unchanged));
        self
    }

    /// When a monitored file counts as complete (see [`FileCompletion`]).
    pub fn read_files_when(mut self, completion: FileCompletion) -> Self {
        if let Some((_, c)) = self.monitor.as_mut() {
            *c = completion;
        }
        self
    }
}

impl<T: Data> Source<T> for FileSource<T> {
    type Split = FileSplit;

    fn boundedness(&self) -> Boundedness {
        match self.monitor {
            Some(_) => Boundedness::ContinuousUnbounded,
            None => Boundedness::Bounded,
        }
    }

    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<FileSplit>>> {
        Ok(Box::new(FileSplitEnumerator::new(
            self.path.clone(),
            self.split_size,
            parallelism,
            self.monitor,
            EnumeratorState::default(),
        )))
    }

    fn restore_enumerator(
        &self,
        parallelism: usize,
        state: &[u8],
    ) -> Result<Box<dyn SplitEnumerator<FileSplit>>> {
        let state: EnumeratorState = postcard::from_bytes(state)?;
        Ok(Box::new(FileSplitEnumerator::new(
            self.path.clone(),
            self.split_size,
            parallelism,
            self.monitor,
            state,
        )))
    }

    fn create_reader(&self, _ctx: &RuntimeContext) -> Result<Box<dyn SourceReader<T, FileSplit>>> {
        Ok(Box::new(FileReader {
            decode: self.decode,
            skip_empty: self.skip_empty,
            on_decode_error: self.on_decode_error,
            pending: VecDeque::new(),
            current: None,
            buf: Vec::with_capacity(256),
            splits_opened: 0,
        }))
    }
}

/// The split being read: its file positioned at the split's offset.
struct OpenSplit {
    split: FileSplit,
    reader: BufReader<File>,
    /// The split's number for per-split watermarks.
    id: u32,
}

struct FileReader<T> {
    decode: Decoder<T>,
    skip_empty: bool,
    on_decode_error: DecodeErrorPolicy,
    pending: VecDeque<FileSplit>,
    current: Option<OpenSplit>,
    buf: Vec<u8>,
    splits_opened: u32,
}

/// Opens `split` at its next line: a fresh range that does not start the
/// file first skips the line in progress at its start (the previous range
/// owns it).
fn open_split(mut split: FileSplit) -> Result<(FileSplit, BufReader<File>)> {
    let file = File::open(&split.path)
        .map_err(|e| SluiceError::io("cannot open input file", &split.path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let seek_err = |e| SluiceError::io("cannot seek in input file", &split.path, e);
    if split.offset == split.start && split.start > 0 {
        reader.seek(SeekFrom::Start(split.start - 1)).map_err(seek_err)?;
        let mut skipped = Vec::new();
        let n = reader
            .read_until(b'\n', &mut skipped)
            .map_err(|e| SluiceError::io("cannot read input file", &split.path, e))?;
        split.offset = split.start - 1 + n as u64;
        if skipped != b"\n" {
            split.line = 0;
        }
    } else if split.offset > 0 {
        reader.seek(SeekFrom::Start(split.offset)).map_err(seek_err)?;
    }
    Ok((split, reader))
}

/// The number of the line starting at `offset` of `path`: one more than the
/// newlines before it.
fn line_number_at(path: &Path, offset: u64) -> Result<u64> {
    let file = File::open(path).map_err(|e| SluiceError::io("cannot open input file", path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file.take(offset));
    let mut newlines = 0;
    loop {
        let buf =
            reader.fill_buf().map_err(|e| SluiceError::io("cannot read input file", path, e))?;
        if buf.is_empty() {
            return Ok(newlines + 1);
        }
        newlines += memchr::memchr_iter(b'\n', buf).count() as u64;
        let n = buf.len();
        reader.consume(n);
    }
}

impl<T: Data> SourceReader<T, FileSplit> for FileReader<T> {
    fn add_splits(&mut self, splits: Vec<FileSplit>) -> Result<()> {
        self.pending.extend(splits);
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<FileSplit>> {
        // The split being read, at the offset after the last line emitted, then the ones not started.
        let current = self.current.iter().map(|c| c.split.clone());
        Ok(current.chain(self.pending.iter().cloned()).collect())
    }

    fn poll_next(&mut self, output: &mut SourceOutput<T>) -> Result<InputStatus> {
        while !output.is_full() {
            let OpenSplit { split, reader, id } = match &mut self.current {
                Some(c) => c,
                None => {
                    let Some(split) = self.pending.pop_front() else {
                        return Ok(InputStatus::EndOfInput);
                    };
                    let (split, reader) = open_split(split)?;
                    // Each split is a split of its own for watermark generation.
                    let id = self.splits_opened;
                    self.splits_opened += 1;
                    output.set_split(id);
                    self.current.insert(OpenSplit { split, reader, id })
                }
            };
            let buffered = if split.offset < split.end {
                reader
                    .fill_buf()
                    .map_err(|e| SluiceError::io("cannot read input file", &split.path, e))?
            } else {
                &[]
            };
            if buffered.is_empty() {
                output.finish_split(*id);
                self.current = None;
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
            if split.line > 0 {
                split.line += 1;
            }
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
                    let number = if line_no > 0 {
                        line_no
                    } else {
                        // Counted once per split, on its first bad line.
                        let at = line_number_at(&split.path, line_offset)?;
                        split.line = at + 1;
                        at
                    };
                    let location = RecordLocation::File {
                        path: split.path.clone(),
                        line: number,
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

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Random lines: empty ones, long ones, some with CRLF; the last one
    /// with or without its newline.
    fn random_file(rng: &mut SmallRng) -> (Vec<u8>, Vec<String>) {
        let mut bytes = Vec::new();
        let mut lines = Vec::new();
        let count = rng.random_range(0..60);
        for i in 0..count {
            let len = match rng.random_range(0..10) {
                0 => 0,
                1 => rng.random_range(100..400),
                _ => rng.random_range(1..20),
            };
            let line: String =
                (0..len).map(|j| (b'a' + ((i * 7 + j) % 26) as u8) as char).collect();
            bytes.extend_from_slice(line.as_bytes());
            let last = i + 1 == count;
            if !last || rng.random_bool(0.5) {
                bytes.extend_from_slice(if rng.random_bool(0.1) { b"\r\n" } else { b"\n" });
            } else if line.is_empty() {
                // An empty last line without a newline is no line at all.
                break;
            }
            lines.push(line);
        }
        (bytes, lines)
    }

    /// Every line read from `split` (at most `max` lines per poll).
    fn read(path: &Path, split: FileSplit, max: usize) -> Vec<String> {
        let source = FileSource::lines(path);
        let mut reader = source.create_reader(&RuntimeContext::for_test(0, 1)).unwrap();
        reader.add_splits(vec![split]).unwrap();
        let mut got = Vec::new();
        loop {
            let mut out = SourceOutput::new(max);
            let status = reader.poll_next(&mut out).unwrap();
            got.extend(out.take().0.into_iter().map(|r| r.value));
            if status == InputStatus::EndOfInput {
                return got;
            }
        }
    }

    fn range(path: &Path, start: u64, end: u64) -> FileSplit {
        FileSplit {
            path: path.to_path_buf(),
            start,
            end,
            offset: start,
            line: u64::from(start == 0),
            modified: 0,
        }
    }

    #[test]
    fn byte_ranges_read_every_line_exactly_once_in_order_whatever_the_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        for seed in 0..300 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let (bytes, lines) = random_file(&mut rng);
            let path = dir.path().join(format!("f{seed}.txt"));
            std::fs::write(&path, &bytes).unwrap();
            let size = bytes.len() as u64;
            let mut cuts: Vec<u64> =
                (0..rng.random_range(0..8)).map(|_| rng.random_range(0..=size)).collect();
            cuts.extend([0, size]);
            cuts.sort_unstable();
            cuts.dedup();
            let mut got = Vec::new();
            for pair in cuts.windows(2) {
                got.extend(read(&path, range(&path, pair[0], pair[1]), rng.random_range(1..5)));
            }
            assert_eq!(got, lines, "seed {seed}, cuts {cuts:?}");
        }
    }

    #[test]
    fn a_range_restored_mid_way_continues_after_the_last_line_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let split = range(&path, 50, 400);
        let whole = read(&path, split.clone(), 1000);
        let source = FileSource::lines(&path);
        let mut reader = source.create_reader(&RuntimeContext::for_test(0, 1)).unwrap();
        reader.add_splits(vec![split]).unwrap();
        let mut first = SourceOutput::new(7);
        reader.poll_next(&mut first).unwrap();
        let state = reader.snapshot_state(1).unwrap();
        let mut resumed: Vec<String> = first.take().0.into_iter().map(|r| r.value).collect();
        resumed.extend(read(&path, state[0].clone(), 1000));
        assert_eq!(resumed, whole);
        assert_eq!(
            whole.first().map(String::as_str),
            Some("line 8"),
            "line 7 starts at byte 49, before the range"
        );
    }

    #[test]
    fn a_bad_line_in_a_later_range_is_named_by_its_line_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.ndjson");
        let mut text: String = (0..50).map(|i| format!("{i}\n")).collect();
        text.push_str("{oops\n");
        std::fs::write(&path, &text).unwrap();
        let source = FileSource::<u64>::ndjson(&path);
        let mut reader = source.create_reader(&RuntimeContext::for_test(0, 1)).unwrap();
        reader.add_splits(vec![range(&path, 100, text.len() as u64)]).unwrap();
        let err = reader.poll_next(&mut SourceOutput::new(100)).unwrap_err();
        assert!(err.to_string().contains("f.ndjson line 51"), "{err}");
    }
}
