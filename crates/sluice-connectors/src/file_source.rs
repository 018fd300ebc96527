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

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_core::{Data, Result, SluiceError};
use sluice_runtime::source::{
    Boundedness, InputStatus, Source, SourceOutput, SourceReader, SourceSplit,
};
use sluice_runtime::split_enumerator::{SplitEnumerator, SplitEnumeratorContext};
use sluice_runtime::{DecodeErrorPolicy, RecordLocation, RuntimeContext};
use tracing::info;

/// Turns one line (without its newline) into a record.
type Decoder<T> = fn(&str) -> std::result::Result<T, String>;

/// The largest byte range one split covers unless set otherwise.
pub const DEFAULT_SPLIT_SIZE: u64 = 64 << 20;

/// The smallest byte range worth a split of its own.
const MIN_SPLIT_SIZE: u64 = 1 << 20;

/// When a file found by continuous monitoring is complete, so it can be read.
#[derive(Clone, Copy, Debug)]
pub enum FileCompletion {
    /// Its size and modification time did not change over one monitoring interval.
    Unchanged,
    /// At once, if its path passes the filter (writers that rename a
    /// finished file into place, or mark unfinished ones by name).
    NameAccepted(fn(&Path) -> bool),
}

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

/// A byte range of one file, and how far it has been read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSplit {
    /// The file.
    pub path: PathBuf,
    /// Start of the range: the split owns the lines that start at or after it...
    pub start: u64,
    /// ...and before this (`u64::MAX`: to the end of the file).
    pub end: u64,
    /// Byte offset of the next line to read.
    pub offset: u64,
    /// Number of the next line, from 1; 0 while unknown (a range that does
    /// not start the file counts its lines only when an error needs them).
    pub line: u64,
}

impl FileSplit {
    /// The whole of `path`.
    pub fn whole(path: PathBuf) -> Self {
        Self { path, start: 0, end: u64::MAX, offset: 0, line: 1 }
    }
}

impl SourceSplit for FileSplit {
    fn split_id(&self) -> String {
        format!("{}@{}", self.path.display(), self.start)
    }
}

/// A file found by listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStatus {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, in ms since the epoch.
    pub modified: i64,
}

/// Every visible file under `path` (itself, if it is a file).
pub fn list_files(path: &Path) -> Result<Vec<FileStatus>> {
    let mut out = Vec::new();
    list_into(path, &mut out)?;
    Ok(out)
}

fn list_into(path: &Path, out: &mut Vec<FileStatus>) -> Result<()> {
    let meta =
        std::fs::metadata(path).map_err(|e| SluiceError::io("cannot read input path", path, e))?;
    if meta.is_file() {
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        out.push(FileStatus { path: path.to_path_buf(), size: meta.len(), modified });
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
            list_into(&entry, out)?;
        }
    }
    Ok(())
}

/// Cuts a file into byte ranges of at most `max_size`, finer when that
/// gives each of `readers` about four of them (not below 1 MiB).
pub fn byte_range_splits(file: &FileStatus, max_size: u64, readers: usize) -> Vec<FileSplit> {
    let balanced = file.size.div_ceil(4 * readers.max(1) as u64).max(MIN_SPLIT_SIZE);
    let size = max_size.min(balanced).max(1);
    if file.size <= size {
        return vec![FileSplit::whole(file.path.clone())];
    }
    let count = file.size.div_ceil(size);
    (0..count)
        .map(|i| {
            let start = i * size;
            let end = if i + 1 == count { u64::MAX } else { start + size };
            FileSplit {
                path: file.path.clone(),
                start,
                end,
                offset: start,
                line: u64::from(start == 0),
            }
        })
        .collect()
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

/// What a [`FileSplitEnumerator`] checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumeratorState {
    /// Splits not yet handed out, in reading order.
    pub pending: VecDeque<FileSplit>,
    /// Every file already cut into splits.
    pub processed: BTreeSet<PathBuf>,
    /// Whether the first listing was made (a bounded source lists once).
    pub listed: bool,
}

/// Hands out the splits of a file source on request: pending splits in
/// order, at least one and up to a split's worth of bytes per request; for
/// a monitored directory, lists it every interval and turns complete new
/// files into splits.
#[derive(Debug)]
pub struct FileSplitEnumerator {
    path: PathBuf,
    split_size: u64,
    parallelism: usize,
    monitor: Option<(Duration, FileCompletion)>,
    state: EnumeratorState,
    /// Readers that asked while nothing was pending.
    waiting: BTreeSet<usize>,
    /// Size and modification time at the previous listing, of files not yet complete.
    last_seen: HashMap<PathBuf, (u64, i64)>,
}

impl FileSplitEnumerator {
    /// An enumerator over `path`, from `state` (default for a fresh start).
    pub fn new(
        path: PathBuf,
        split_size: u64,
        parallelism: usize,
        monitor: Option<(Duration, FileCompletion)>,
        state: EnumeratorState,
    ) -> Self {
        Self {
            path,
            split_size,
            parallelism,
            monitor,
            state,
            waiting: BTreeSet::new(),
            last_seen: HashMap::new(),
        }
    }

    /// Turns the complete, unprocessed files among `files` into pending splits.
    fn add_files(&mut self, mut files: Vec<FileStatus>) {
        files.retain(|f| !self.state.processed.contains(&f.path));
        let mut complete = Vec::new();
        let mut seen = HashMap::new();
        for file in files {
            let is_complete = match self.monitor.map(|(_, c)| c) {
                None => true,
                Some(FileCompletion::NameAccepted(accept)) => accept(&file.path),
                Some(FileCompletion::Unchanged) => {
                    self.last_seen.get(&file.path) == Some(&(file.size, file.modified))
                }
            };
            if is_complete {
                complete.push(file);
            } else {
                seen.insert(file.path.clone(), (file.size, file.modified));
            }
        }
        self.last_seen = seen;
        complete.sort_by(|a, b| (a.modified, &a.path).cmp(&(b.modified, &b.path)));
        for file in complete {
            if self.monitor.is_some() {
                info!(file = %file.path.display(), bytes = file.size, "new input file");
            }
            self.state.pending.extend(byte_range_splits(&file, self.split_size, self.parallelism));
            self.state.processed.insert(file.path);
        }
    }

    /// Gives `subtask` pending splits, or says none will come (bounded) or
    /// remembers it (monitored). True if it got splits.
    fn serve(&mut self, subtask: usize, ctx: &mut SplitEnumeratorContext<FileSplit>) -> bool {
        let mut bytes = 0;
        while bytes < self.split_size {
            let Some(split) = self.state.pending.pop_front() else { break };
            bytes += split.end.saturating_sub(split.offset).min(self.split_size);
            ctx.assign_split(subtask, split);
        }
        if bytes > 0 {
            return true;
        }
        if self.monitor.is_none() {
            ctx.signal_no_more_splits(subtask);
        } else {
            self.waiting.insert(subtask);
        }
        false
    }

    fn serve_waiting(&mut self, ctx: &mut SplitEnumeratorContext<FileSplit>) {
        for subtask in std::mem::take(&mut self.waiting) {
            self.serve(subtask, ctx);
        }
    }
}

impl SplitEnumerator<FileSplit> for FileSplitEnumerator {
    fn start(&mut self, ctx: &mut SplitEnumeratorContext<FileSplit>) -> Result<()> {
        match self.monitor {
            None if !self.state.listed => {
                // A bounded source lists once, before any task reads: a
                // missing path fails the job at once, naming it.
                self.add_files(list_files(&self.path)?);
                self.state.listed = true;
            }
            None => {}
            Some((interval, _)) => {
                let path = self.path.clone();
                ctx.discover_periodically(
                    interval,
                    Box::new(move || {
                        list_files(&path).map(|files| {
                            files
                                .into_iter()
                                .map(|f| FileSplit {
                                    // A candidate: the whole file, its size and
                                    // modification time in place of positions.
                                    path: f.path,
                                    start: 0,
                                    end: f.size,
                                    offset: f.modified as u64,
                                    line: 0,
                                })
                                .collect()
                        })
                    }),
                );
            }
        }
        Ok(())
    }

    fn handle_split_request(
        &mut self,
        subtask: usize,
        _finished: &[String],
        ctx: &mut SplitEnumeratorContext<FileSplit>,
    ) -> Result<()> {
        self.serve(subtask, ctx);
        Ok(())
    }

    fn add_splits_back(&mut self, splits: Vec<FileSplit>) -> Result<()> {
        // Splits in progress at the checkpoint come first, in their order.
        for split in splits.into_iter().rev() {
            self.state.pending.push_front(split);
        }
        Ok(())
    }

    fn handle_discovered(
        &mut self,
        candidates: Vec<FileSplit>,
        ctx: &mut SplitEnumeratorContext<FileSplit>,
    ) -> Result<()> {
        let files = candidates
            .into_iter()
            .map(|c| FileStatus { path: c.path, size: c.end, modified: c.offset as i64 })
            .collect();
        self.add_files(files);
        self.state.listed = true;
        self.serve_waiting(ctx);
        Ok(())
    }

    fn snapshot_state(&mut self) -> Result<Vec<u8>> {
        Ok(postcard::to_allocvec(&self.state)?)
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

    fn snapshot_state(&mut self) -> Result<Vec<FileSplit>> {
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
