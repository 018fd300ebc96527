//! Flink's socketTextStream: reads lines from a TCP server. It is not
//! parallel (at most one subtask) and ends when the server closes the
//! connection.

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::{Result, SluiceError};
use sluice_runtime::source::{
    Boundedness, InputStatus, Source, SourceOutput, SourceReader, SourceSplit,
};
use sluice_runtime::RuntimeContext;

/// Lines from `host:port`.
#[derive(Clone, Debug)]
pub struct SocketTextSource {
    address: String,
    connect_timeout: Duration,
}

impl SocketTextSource {
    /// Lines from the TCP server at `host:port`.
    pub fn new(host: &str, port: u16) -> Self {
        Self { address: format!("{host}:{port}"), connect_timeout: Duration::from_secs(5) }
    }

    fn system(&self) -> String {
        format!("socket source {}", self.address)
    }
}

/// The single split of a socket source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SocketSplit;

impl SourceSplit for SocketSplit {
    fn split_id(&self) -> String {
        "socket".into()
    }
}

impl Source<String> for SocketTextSource {
    type Split = SocketSplit;

    fn boundedness(&self) -> Boundedness {
        Boundedness::ContinuousUnbounded
    }

    fn max_parallelism(&self) -> Option<usize> {
        Some(1)
    }

    fn create_splits(&self, _parallelism: usize) -> Result<Vec<SocketSplit>> {
        Ok(vec![SocketSplit])
    }

    fn create_reader(
        &self,
        _ctx: &RuntimeContext,
    ) -> Result<Box<dyn SourceReader<String, SocketSplit>>> {
        let cannot = |e: std::io::Error| {
            SluiceError::external(self.system(), format!("cannot connect: {e}"))
        };
        let addr = self.address.to_socket_addrs().map_err(cannot)?.next().ok_or_else(|| {
            SluiceError::external(self.system(), "the host name resolves to no address")
        })?;
        let stream = TcpStream::connect_timeout(&addr, self.connect_timeout).map_err(cannot)?;
        // Short reads let the task flush partial batches and notice cancellation.
        stream.set_read_timeout(Some(Duration::from_millis(5))).map_err(cannot)?;
        Ok(Box::new(SocketReader {
            system: self.system(),
            reader: BufReader::new(stream),
            buf: Vec::new(),
            line: 1,
        }))
    }
}

struct SocketReader {
    system: String,
    reader: BufReader<TcpStream>,
    buf: Vec<u8>,
    line: u64,
}

impl SourceReader<String, SocketSplit> for SocketReader {
    fn add_splits(&mut self, _splits: Vec<SocketSplit>) -> Result<()> {
        Ok(())
    }

    fn poll_next(&mut self, output: &mut SourceOutput<String>) -> Result<InputStatus> {
        while !output.is_full() {
            // A partial line stays in `buf` across timeouts.
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    if !self.buf.is_empty() {
                        let last = std::mem::take(&mut self.buf);
                        output.collect(self.decode(&last)?);
                    }
                    return Ok(InputStatus::EndOfInput);
                }
                Ok(_) if self.buf.ends_with(b"\n") => {
                    let line = std::mem::take(&mut self.buf);
                    output.collect(self.decode(&line)?);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(InputStatus::NothingAvailable);
                }
                Err(e) => {
                    return Err(SluiceError::external(
                        self.system.clone(),
                        format!("read failed: {e}"),
                    ))
                }
            }
        }
        Ok(InputStatus::MoreAvailable)
    }
}

impl SocketReader {
    fn decode(&mut self, bytes: &[u8]) -> Result<String> {
        let n = self.line;
        self.line += 1;
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        String::from_utf8(bytes.to_vec()).map_err(|e| SluiceError::MalformedRecord {
            input: format!("{} line {n}", self.system),
            message: format!("not UTF-8: {e}"),
        })
    }
}
