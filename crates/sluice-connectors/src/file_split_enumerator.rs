//! The split enumerator of the file source: lists files, cuts them into
//! byte ranges, and hands the ranges out to readers that ask, in reading
//! order (modification time, then name; a file's ranges in order). A
//! bounded source lists once, when the job starts; a monitored one lists
//! every interval on the discovery thread and turns each complete new file
//! into splits. The files already cut are part of the checkpointed state:
//! after a restore, none is read twice and none is missed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sluice_core::{Result, SluiceError};
use sluice_runtime::source::SourceSplit;
use sluice_runtime::split_enumerator::{SplitEnumerator, SplitEnumeratorContext};
use tracing::info;

/// The largest byte range one split covers unless set otherwise.
pub const DEFAULT_SPLIT_SIZE: u64 = 64 << 20;

/// How many ranges of one large file each reader should get.
pub const RANGES_PER_READER: u64 = 16;

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

/// A byte range of one file, and how far it has been read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSplit {
    /// The file.
    pub path: PathBuf,
    /// Start of the range: the split owns the lines that start at or after it...
    pub start: u64,
    /// ...and before this (the file's size, for its last range).
    pub end: u64,
    /// Byte offset of the next line to read.
    pub offset: u64,
    /// Number of the next line, from 1; 0 while unknown (a range that does
    /// not start the file counts its lines only when an error needs them).
    pub line: u64,
    /// The file's modification time when it was listed, in ms since the epoch.
    pub modified: i64,
}

impl FileSplit {
    /// The whole of a listed file.
    pub fn whole(file: &FileStatus) -> Self {
        Self {
            path: file.path.clone(),
            start: 0,
            end: file.size,
            offset: 0,
            line: 1,
            modified: file.modified,
        }
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
/// gives each of `readers` about [`RANGES_PER_READER`] of them (not below
/// 1 MiB): readers that pull small ranges finish together.
pub fn byte_range_splits(file: &FileStatus, max_size: u64, readers: usize) -> Vec<FileSplit> {
    let ranges = RANGES_PER_READER * readers.max(1) as u64;
    let balanced = file.size.div_ceil(ranges).max(MIN_SPLIT_SIZE);
    let size = max_size.min(balanced).max(1);
    if file.size <= size {
        return vec![FileSplit::whole(file)];
    }
    let count = file.size.div_ceil(size);
    (0..count)
        .map(|i| {
            let start = i * size;
            let end = (start + size).min(file.size);
            let line = u64::from(start == 0);
            FileSplit { start, end, offset: start, line, ..FileSplit::whole(file) }
        })
        .collect()
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
        // Small files go several to a request, up to a split's worth of
        // bytes, but never more than a fair share of what is pending: the
        // other readers get work too.
        let share = self.state.pending.len().div_ceil(self.parallelism.max(1));
        let (mut bytes, mut given) = (0, 0);
        while bytes < self.split_size && given < share {
            let Some(split) = self.state.pending.pop_front() else { break };
            bytes += split.end.saturating_sub(split.offset).max(1);
            given += 1;
            ctx.assign_split(subtask, split);
        }
        if given > 0 {
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
                // Each candidate is a whole file as listed, its size as its end.
                let discover = move || {
                    let files = list_files(&path)?;
                    Ok(files
                        .iter()
                        .map(|f| FileSplit { end: f.size, ..FileSplit::whole(f) })
                        .collect())
                };
                ctx.discover_periodically(interval, Box::new(discover));
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
            .map(|c| FileStatus { path: c.path, size: c.end, modified: c.modified })
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const MIB: u64 = 1 << 20;

    fn file(name: &str, size: u64, modified: i64) -> FileStatus {
        FileStatus { path: PathBuf::from(format!("/in/{name}")), size, modified }
    }

    /// A bounded enumerator over already listed `files`.
    fn bounded(files: Vec<FileStatus>, split_size: u64, readers: usize) -> FileSplitEnumerator {
        let mut e = FileSplitEnumerator::new(
            "/in".into(),
            split_size,
            readers,
            None,
            EnumeratorState::default(),
        );
        e.add_files(files);
        e.state.listed = true;
        e
    }

    fn monitored(completion: FileCompletion, readers: usize) -> FileSplitEnumerator {
        let monitor = Some((Duration::from_secs(1), completion));
        FileSplitEnumerator::new(
            "/in".into(),
            64 * MIB,
            readers,
            monitor,
            EnumeratorState::default(),
        )
    }

    /// Reader `subtask` asks once: the splits it got, and whether it was told to end.
    fn ask(e: &mut FileSplitEnumerator, subtask: usize, readers: usize) -> (Vec<FileSplit>, bool) {
        let mut ctx = SplitEnumeratorContext::new(readers);
        e.handle_split_request(subtask, &[], &mut ctx).unwrap();
        let (assigned, ended) = ctx.take_actions();
        assert!(assigned.iter().all(|(s, _)| *s == subtask), "only the asking reader gets splits");
        (assigned.into_iter().map(|(_, split)| split).collect(), ended.contains(&subtask))
    }

    /// Readers ask in turn until each was told to end; every split handed out, by id.
    fn drain(e: &mut FileSplitEnumerator, readers: usize) -> BTreeMap<String, usize> {
        let mut got = BTreeMap::new();
        let mut ended = vec![false; readers];
        while ended.contains(&false) {
            for (r, ended) in ended.iter_mut().enumerate() {
                if *ended {
                    continue;
                }
                let (splits, end) = ask(e, r, readers);
                for s in splits {
                    *got.entry(s.split_id()).or_insert(0) += 1;
                }
                *ended = end;
            }
        }
        got
    }

    fn ids(splits: &[FileSplit]) -> Vec<String> {
        splits.iter().map(SourceSplit::split_id).collect()
    }

    #[test]
    fn a_large_file_is_cut_into_ranges_that_cover_it_and_give_each_reader_several() {
        let big = file("big", 100 * MIB + 7, 0);
        let splits = byte_range_splits(&big, 64 * MIB, 2);
        assert_eq!(splits.len(), 32, "about 16 per reader, below the 64 MiB maximum");
        assert_eq!(splits[0].start, 0);
        for pair in splits.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "the ranges touch");
        }
        assert_eq!(splits.last().unwrap().end, big.size, "the last one runs to the end");
        assert_eq!(splits[0].line, 1, "the first range counts lines from 1");
        assert!(splits[1..].iter().all(|s| s.line == 0), "later ranges count them when needed");
        assert_eq!(byte_range_splits(&file("small", 10, 0), 64 * MIB, 2).len(), 1);
        assert_eq!(byte_range_splits(&big, 4 * MIB, 1).len(), 26, "the maximum bounds a range");
        assert_eq!(
            byte_range_splits(&file("mid", 8 * MIB, 0), 64 * MIB, 2).len(),
            8,
            "1 MiB at least"
        );
    }

    #[test]
    fn readers_pull_splits_in_order_and_each_is_told_to_end_when_none_is_left() {
        let mut e = bounded(vec![file("b", 3 * MIB, 20), file("a", 3 * MIB, 10)], MIB, 2);
        let (first, end) = ask(&mut e, 0, 2);
        assert!(!end);
        assert_eq!(ids(&first), vec!["/in/a@0"], "oldest file first; a split's worth per request");
        let got = drain(&mut e, 2);
        assert_eq!(got.len(), 5, "a: 3 ranges, b: 3 ranges, one already taken");
        assert!(got.values().all(|n| *n == 1), "no split twice: {got:?}");
        let (none, end) = ask(&mut e, 1, 2);
        assert!(
            none.is_empty() && end,
            "a bounded source tells a reader that asks late to end too"
        );
    }

    #[test]
    fn a_request_takes_small_files_up_to_a_splits_worth_of_bytes() {
        let files = (0..10).map(|i| file(&format!("f{i}"), 300 * 1024, i)).collect();
        let mut e = bounded(files, MIB, 1);
        let (splits, _) = ask(&mut e, 0, 1);
        assert_eq!(splits.len(), 4, "4 × 300 KiB reach 1 MiB");
    }

    #[test]
    fn a_request_takes_no_more_than_a_fair_share_of_the_pending_splits() {
        let files = (0..4).map(|i| file(&format!("f{i}"), 1024, i)).collect();
        let mut e = bounded(files, MIB, 2);
        assert_eq!(ask(&mut e, 0, 2).0.len(), 2, "half of 4 for the first of 2 readers");
        assert_eq!(ask(&mut e, 1, 2).0.len(), 1, "half of the 2 left");
        assert_eq!(ask(&mut e, 1, 2).0.len(), 1);
    }

    #[test]
    fn files_with_the_same_modification_time_are_read_in_name_order() {
        let mut e = bounded(vec![file("z", 10, 5), file("m", 10, 5), file("a", 10, 9)], MIB, 1);
        let (splits, _) = ask(&mut e, 0, 1);
        assert_eq!(ids(&splits), vec!["/in/m@0", "/in/z@0", "/in/a@0"]);
    }

    /// What reader subtasks hold when a checkpoint is taken, and what the enumerator holds.
    fn checkpoint_after(
        e: &mut FileSplitEnumerator,
        requests: &[usize],
        readers: usize,
    ) -> (Vec<u8>, Vec<FileSplit>) {
        let mut held = Vec::new();
        for r in requests {
            held.extend(ask(e, *r, readers).0);
        }
        (e.snapshot_state().unwrap(), held)
    }

    fn all_ids(files: &[FileStatus], split_size: u64, readers: usize) -> BTreeSet<String> {
        files.iter().flat_map(|f| ids(&byte_range_splits(f, split_size, readers))).collect()
    }

    #[test]
    fn after_a_failure_the_restored_enumerator_and_its_readers_cover_every_split_once() {
        let files: Vec<FileStatus> = (0..4).map(|i| file(&format!("f{i}"), 2 * MIB, i)).collect();
        let mut e = bounded(files.clone(), MIB, 2);
        let (state, held) = checkpoint_after(&mut e, &[0, 1, 0], 2);
        // Assigned after the checkpoint, then lost with the failed attempt.
        let lost = ask(&mut e, 1, 2).0;
        assert!(!lost.is_empty());

        let restored: EnumeratorState = postcard::from_bytes(&state).unwrap();
        let mut e = FileSplitEnumerator::new("/in".into(), MIB, 2, None, restored);
        e.add_splits_back(held.clone()).unwrap();
        let again = drain(&mut e, 2);
        assert!(again.values().all(|n| *n == 1), "none twice: {again:?}");
        let handed: BTreeSet<String> = again.keys().cloned().collect();
        assert_eq!(
            handed,
            all_ids(&files, MIB, 2),
            "none lost: the lost ones are handed out again"
        );
        assert!(ids(&lost).iter().all(|id| handed.contains(id)));
    }

    fn rescale(from: usize, to: usize) {
        let files: Vec<FileStatus> = (0..5).map(|i| file(&format!("f{i}"), 3 * MIB, i)).collect();
        let mut e = bounded(files.clone(), MIB, from);
        let requests: Vec<usize> = (0..from).chain(0..from).collect();
        let (state, held) = checkpoint_after(&mut e, &requests, from);
        let restored: EnumeratorState = postcard::from_bytes(&state).unwrap();
        let mut e = FileSplitEnumerator::new("/in".into(), MIB, to, None, restored);
        e.add_splits_back(held).unwrap();
        let got = drain(&mut e, to);
        assert!(got.values().all(|n| *n == 1), "{from} -> {to}: none twice");
        let handed: BTreeSet<String> = got.keys().cloned().collect();
        assert_eq!(handed, all_ids(&files, MIB, from), "{from} -> {to}: none lost");
    }

    #[test]
    fn a_restore_from_2_to_3_readers_hands_every_split_out_once() {
        rescale(2, 3);
    }

    #[test]
    fn a_restore_from_3_to_2_readers_hands_every_split_out_once() {
        rescale(3, 2);
    }

    fn discovered(
        e: &mut FileSplitEnumerator,
        files: &[FileStatus],
        readers: usize,
    ) -> Vec<(usize, String)> {
        let mut ctx = SplitEnumeratorContext::new(readers);
        let candidates =
            files.iter().map(|f| FileSplit { end: f.size, ..FileSplit::whole(f) }).collect();
        e.handle_discovered(candidates, &mut ctx).unwrap();
        ctx.take_actions().0.into_iter().map(|(r, s)| (r, s.split_id())).collect()
    }

    #[test]
    fn a_monitored_file_is_read_once_it_did_not_change_over_an_interval() {
        let mut e = monitored(FileCompletion::Unchanged, 1);
        assert!(ask(&mut e, 0, 1).0.is_empty(), "nothing yet: the reader waits");
        assert!(
            discovered(&mut e, &[file("a", 10, 1)], 1).is_empty(),
            "first seen: maybe still written"
        );
        assert!(discovered(&mut e, &[file("a", 20, 2)], 1).is_empty(), "it grew");
        assert_eq!(
            discovered(&mut e, &[file("a", 20, 2)], 1),
            vec![(0, "/in/a@0".into())],
            "stable: the waiting reader gets it"
        );
        assert!(discovered(&mut e, &[file("a", 20, 2)], 1).is_empty(), "never twice");
    }

    #[test]
    fn a_name_filter_admits_a_monitored_file_as_soon_as_it_is_listed() {
        let mut e = monitored(
            FileCompletion::NameAccepted(|p| p.extension().is_none_or(|x| x != "tmp")),
            1,
        );
        ask(&mut e, 0, 1);
        let got = discovered(&mut e, &[file("a.tmp", 10, 1), file("b.csv", 10, 2)], 1);
        assert_eq!(got, vec![(0, "/in/b.csv@0".into())]);
    }

    #[test]
    fn a_monitored_source_keeps_readers_waiting_instead_of_ending_them() {
        let mut e = monitored(FileCompletion::NameAccepted(|_| true), 2);
        let (splits, end) = ask(&mut e, 1, 2);
        assert!(splits.is_empty() && !end);
        assert_eq!(discovered(&mut e, &[file("a", 10, 1)], 2), vec![(1, "/in/a@0".into())]);
    }

    #[test]
    fn a_restored_monitored_enumerator_never_splits_a_processed_file_again() {
        let mut e = monitored(FileCompletion::NameAccepted(|_| true), 1);
        discovered(&mut e, &[file("a", 10, 1)], 1);
        let state: EnumeratorState = postcard::from_bytes(&e.snapshot_state().unwrap()).unwrap();
        let monitor = Some((Duration::from_secs(1), FileCompletion::NameAccepted(|_| true)));
        let mut e = FileSplitEnumerator::new("/in".into(), 64 * MIB, 1, monitor, state);
        assert_eq!(
            ids(&ask(&mut e, 0, 1).0),
            vec!["/in/a@0"],
            "pending at the checkpoint: handed out"
        );
        assert!(ask(&mut e, 0, 1).0.is_empty(), "then the reader waits");
        let got = discovered(&mut e, &[file("a", 10, 1), file("b", 10, 2)], 1);
        assert_eq!(got, vec![(0, "/in/b@0".into())], "a was split before the checkpoint");
    }

    #[test]
    fn a_missing_input_path_is_an_error_naming_it() {
        let err = list_files(Path::new("/no/such/input")).unwrap_err();
        assert!(err.to_string().contains("/no/such/input"), "{err}");
    }
}
