//! The data plane's wire format. Each frame is a little-endian `u32`
//! length, a postcard [`Header`], and for records the batch's bytes as the
//! channel's codec wrote them. Before any frame, both ends say hello and
//! prove they know the cluster secret (an HMAC of the other end's nonce),
//! so the secret never crosses the wire.

use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use sluice_core::{CheckpointBarrier, Result, SluiceError, Watermark};

/// Version of the data-plane protocol; both ends must speak the same.
pub const PROTOCOL_VERSION: u32 = 1;

/// A frame longer than this is refused as garbage (a wrong peer or a bug),
/// before any memory is reserved for it.
pub const MAX_FRAME_BYTES: usize = 1 << 30;

/// Names a channel across the cluster: the job, the attempt that deployed
/// it, and its index among the attempt's remote channels. The attempt lets
/// a receiver refuse data from a zombie of an earlier attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChannelId {
    /// The job.
    pub job: u64,
    /// The job's attempt (0 for the first deployment, +1 per restart).
    pub attempt: u32,
    /// The channel within the attempt.
    pub index: u32,
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "channel {} of job {:016x} attempt {}", self.index, self.job, self.attempt)
    }
}

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Header {
    /// A batch of records follows; it used one credit.
    Records(ChannelId),
    /// A watermark.
    Watermark(ChannelId, Watermark),
    /// A checkpoint barrier.
    Barrier(ChannelId, CheckpointBarrier),
    /// The sender became idle or active.
    IdleStatus(ChannelId, bool),
    /// The sender will send nothing more.
    EndOfInput(ChannelId),
    /// The receiver grants credits (the first grant opens the channel).
    Credit(ChannelId, u32),
    /// The sending end dropped its end of the channel (its task ended or
    /// failed): the other end's task is told as an in-memory channel would.
    Close(ChannelId),
    /// The sender shuts down: an orderly end of the connection, not a loss.
    Goodbye,
}

/// Room for any encoded header (the largest, a barrier, needs 42 bytes).
const HEAD_ROOM: usize = 48;

/// One frame queued for a connection's writer, encoded by the thread that
/// sent it so the writer only copies bytes.
#[derive(Debug)]
pub struct OutFrame {
    head: [u8; HEAD_ROOM],
    head_len: u8,
    goodbye: bool,
    payload: Vec<u8>,
}

impl OutFrame {
    /// A frame of `header` followed by `payload` (empty but for records).
    pub fn new(header: &Header, payload: Vec<u8>) -> Self {
        let mut head = [0u8; HEAD_ROOM];
        let head_len =
            postcard::to_slice(header, &mut head).expect("a header fits HEAD_ROOM").len();
        Self { head, head_len: head_len as u8, goodbye: *header == Header::Goodbye, payload }
    }

    /// Whether the writer stops after this frame.
    pub fn is_goodbye(&self) -> bool {
        self.goodbye
    }

    /// Bytes on the wire, length prefix included.
    pub fn wire_len(&self) -> usize {
        4 + self.head_len as usize + self.payload.len()
    }

    /// Writes the frame (buffered by the caller).
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let len = self.head_len as usize + self.payload.len();
        w.write_all(&(len as u32).to_le_bytes())?;
        w.write_all(&self.head[..self.head_len as usize])?;
        w.write_all(&self.payload)
    }
}

/// Reads the next frame into `buf`; `None` at a clean end of stream.
/// Returns the header and the payload's range in `buf`.
pub fn read_frame(
    r: &mut impl Read,
    buf: &mut Vec<u8>,
) -> Result<Option<(Header, std::ops::Range<usize>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(SluiceError::Internal(format!(
            "data connection: a frame of {len} bytes is over the limit of {MAX_FRAME_BYTES}"
        )));
    }
    buf.resize(len, 0);
    r.read_exact(buf).map_err(io)?;
    let (header, rest) = postcard::take_from_bytes::<Header>(buf)
        .map_err(|e| SluiceError::Internal(format!("data connection: a malformed frame: {e}")))?;
    Ok(Some((header, len - rest.len()..len)))
}

/// A socket error of a data connection: external, so a restart may help.
pub fn io(e: std::io::Error) -> SluiceError {
    SluiceError::external("data connection", e.to_string())
}

/// The first message on a data connection, from each end.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version.
    pub version: u32,
    /// The sending TaskManager's id.
    pub task_manager: String,
    /// Random bytes the other end must prove the secret over.
    pub nonce: [u8; 32],
}

/// The second message: proof of the cluster secret over the other end's nonce.
#[derive(Debug, Serialize, Deserialize)]
pub struct Proof {
    /// HMAC-SHA256 of the nonce and the prover's id; empty without a secret.
    pub mac: Vec<u8>,
}

/// Writes a length-prefixed postcard message (handshake).
pub fn write_message<T: Serialize>(w: &mut impl Write, message: &T) -> Result<()> {
    let bytes = postcard::to_allocvec(message)?;
    w.write_all(&(bytes.len() as u32).to_le_bytes()).map_err(io)?;
    w.write_all(&bytes).map_err(io)?;
    w.flush().map_err(io)?;
    Ok(())
}

/// Reads a length-prefixed postcard message (handshake); at most 64 KiB.
pub fn read_message<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(io)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 1 << 16 {
        return Err(SluiceError::Internal(format!(
            "data connection: a handshake message of {len} bytes (not a Sluice TaskManager?)"
        )));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).map_err(io)?;
    postcard::from_bytes(&buf).map_err(|e| {
        SluiceError::Internal(format!(
            "data connection: a malformed handshake (not a Sluice TaskManager?): {e}"
        ))
    })
}

/// The proof that `prover` knows `secret`, over `nonce`.
pub fn prove(secret: Option<&[u8]>, nonce: &[u8; 32], prover: &str) -> Vec<u8> {
    secret
        .map_or_else(Vec::new, |secret| mac(secret, nonce, prover).finalize().into_bytes().to_vec())
}

/// Whether `proof` shows that `prover` knows `secret` (in constant time).
pub fn verify(secret: Option<&[u8]>, nonce: &[u8; 32], prover: &str, proof: &[u8]) -> bool {
    match secret {
        Some(secret) => mac(secret, nonce, prover).verify_slice(proof).is_ok(),
        None => proof.is_empty(),
    }
}

/// HMAC-SHA256 under `secret` of the protocol's name, `nonce` and `prover`.
fn mac(secret: &[u8], nonce: &[u8; 32], prover: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"sluice data plane v1");
    mac.update(nonce);
    mac.update(prover.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_their_payload() {
        let channel = ChannelId { job: u64::MAX, attempt: u32::MAX, index: u32::MAX };
        let barrier = CheckpointBarrier { id: u64::MAX, timestamp: i64::MIN, savepoint: true };
        let headers = [
            Header::Records(channel),
            Header::Watermark(channel, Watermark::MIN),
            Header::Barrier(channel, barrier),
            Header::IdleStatus(channel, true),
            Header::EndOfInput(channel),
            Header::Credit(channel, u32::MAX),
            Header::Close(channel),
            Header::Goodbye,
        ];
        let mut wire = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            OutFrame::new(h, vec![i as u8; i * 3]).write_to(&mut wire).unwrap();
        }
        let mut r = wire.as_slice();
        let mut buf = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            let (header, payload) = read_frame(&mut r, &mut buf).unwrap().unwrap();
            assert_eq!(&header, h);
            assert_eq!(&buf[payload], vec![i as u8; i * 3].as_slice());
        }
        assert!(read_frame(&mut r, &mut buf).unwrap().is_none());
        assert!(OutFrame::new(&Header::Goodbye, Vec::new()).is_goodbye());
        assert!(!OutFrame::new(&Header::EndOfInput(channel), Vec::new()).is_goodbye());
    }

    #[test]
    fn an_oversized_frame_is_refused_before_reading_it() {
        let wire = u32::MAX.to_le_bytes();
        let err = read_frame(&mut wire.as_slice(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn a_proof_holds_only_for_the_same_secret_nonce_and_prover() {
        let nonce = [7u8; 32];
        let proof = prove(Some(b"s3cret"), &nonce, "tm-1");
        assert!(verify(Some(b"s3cret"), &nonce, "tm-1", &proof));
        assert!(!verify(Some(b"other"), &nonce, "tm-1", &proof));
        assert!(!verify(Some(b"s3cret"), &[8u8; 32], "tm-1", &proof));
        assert!(!verify(Some(b"s3cret"), &nonce, "tm-2", &proof));
        assert!(!verify(Some(b"s3cret"), &nonce, "tm-1", &[]));
        assert!(verify(None, &nonce, "tm-1", &prove(None, &nonce, "tm-1")));
    }
}
