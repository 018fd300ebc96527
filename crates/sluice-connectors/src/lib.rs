//! Sources and sinks that need no external service: in-memory collections,
//! generated sequences, the Nexmark generator, text and NDJSON files and
//! directories, TCP sockets;
//! print, discard, file and collect sinks.
#![deny(missing_docs)]

pub mod collect;
pub mod collection;
pub mod datagen;
pub mod exactly_once_file_sink;
pub mod file_sink;
pub mod file_source;
pub mod file_split_enumerator;
pub mod nexmark;
pub mod print;
pub mod socket;

pub use collect::{CollectHandle, CollectSink};
pub use collection::CollectionSource;
pub use datagen::DataGeneratorSource;
pub use exactly_once_file_sink::ExactlyOnceFileSink;
pub use file_sink::FileSink;
pub use file_source::{FileCompletion, FileSource};
pub use print::{DiscardingSink, PrintSink};
pub use socket::SocketTextSource;
