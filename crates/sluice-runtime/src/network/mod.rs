//! The data plane between TaskManagers: one TCP connection per pair of
//! TaskManagers, carrying every channel between them in both directions,
//! with credit-based flow control per channel ([`credit`]).
//!
//! A remote channel has the same two ends as an in-memory one
//! ([`ChannelSender`], [`ChannelReceiver`]), so tasks, the input gate and
//! barrier alignment do not know which kind they have:
//! - the receiving TaskManager registers the channel
//!   ([`NetworkEnvironment::input_channel`]), which announces `capacity`
//!   credits; the channel opens with that announcement;
//! - the sending task encodes each batch on its own thread and queues the
//!   frame for the connection's writer, after taking a credit;
//! - the connection's reader decodes the batch into the channel's queue;
//!   when the task takes it, one credit goes back.
//!
//! So each channel holds at most `capacity` batches at the receiver and
//! none waits at the sender beyond the credits it had: a slow receiver
//! slows its senders with bounded memory on both ends. Elements of one
//! channel stay in order (one sending thread, one connection, one reader).
//!
//! Connections are made by the TaskManager whose id sorts first, and
//! begin with a handshake in which each end proves it knows the cluster
//! secret. Every channel is named by its job *attempt*: frames of an attempt
//! older than the newest one this TaskManager has seen are refused, so a
//! zombie of a failed attempt cannot feed the new one.

pub mod credit;
pub mod frame;
pub mod tls;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::{BufReader, BufWriter};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use rand::RngCore;
use tracing::{info, warn};

use sluice_core::{RecordBatch, Result, SluiceError, StreamElement};

use crate::channel::{remote_receiver, remote_sender, ChannelReceiver, ChannelSender};
use credit::Credit;
use frame::{read_frame, read_message, write_message, ChannelId, Header, Hello, OutFrame, Proof};
pub use tls::DataTls;
use tls::TlsStream;

/// How long a TaskManager keeps trying to reach a peer's data address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a shutdown waits for peers to close their ends.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Buffers of the connection's reader and writer: small frames (credits,
/// control elements) are coalesced; a batch larger than this bypasses the
/// buffer, saving a copy.
const IO_BUFFER_BYTES: usize = 64 << 10;

/// Settings of a TaskManager's data plane.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// This TaskManager's id, unique in the cluster.
    pub task_manager: String,
    /// Where to listen for data connections (port 0: any free port).
    pub bind: SocketAddr,
    /// The cluster secret; without it or TLS, every connection must be on loopback.
    pub secret: Option<Vec<u8>>,
    /// Mutual TLS for every data connection.
    pub tls: Option<DataTls>,
}

/// A TaskManager's data plane: its listener and its connections to peers.
#[derive(Debug, Clone)]
pub struct NetworkEnvironment {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: String,
    secret: Option<Vec<u8>>,
    tls: Option<DataTls>,
    address: SocketAddr,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    channels: Mutex<Channels>,
    /// Bumped whenever a channel goes, so readers drop their cached entries.
    version: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    shut_down: AtomicBool,
}

#[derive(Debug, Default)]
struct Channels {
    inbound: HashMap<ChannelId, Inbound>,
    outbound: HashMap<ChannelId, Outbound>,
    /// Per job, the newest attempt seen; older attempts' frames are refused.
    attempts: HashMap<u64, u32>,
}

impl Channels {
    /// Whether `channel` belongs to an attempt older than the newest seen.
    fn is_stale(&self, channel: ChannelId) -> bool {
        self.attempts.get(&channel.job).is_some_and(|&newest| channel.attempt < newest)
    }

    /// The sending end's entry of `channel` to `peer`, made if missing (the
    /// peer's credit or close may arrive before the local task registers).
    fn outbound(&mut self, channel: ChannelId, peer: &str) -> &mut Outbound {
        self.outbound
            .entry(channel)
            .or_insert_with(|| Outbound { peer: peer.to_string(), credit: Arc::new(Credit::new()) })
    }

    /// Ends the matching channels (by id and peer): senders fail, receivers
    /// see the channel close.
    fn drop_where(&mut self, doomed: impl Fn(&ChannelId, &str) -> bool) {
        self.inbound.retain(|c, i| !doomed(c, &i.peer));
        self.outbound.retain(|c, o| {
            let drop = doomed(c, &o.peer);
            if drop {
                o.credit.close();
            }
            !drop
        });
    }
}

#[derive(Debug, Clone)]
struct Inbound {
    peer: String,
    data: Sender<StreamElement>,
    credit: Arc<Credit>,
    decode: fn(&[u8]) -> Result<RecordBatch>,
}

#[derive(Debug, Clone)]
struct Outbound {
    peer: String,
    credit: Arc<Credit>,
}

/// A peer TaskManager: the queue of frames for it, which exists before
/// the connection does, and the connection once it is up.
#[derive(Debug)]
struct Peer {
    id: String,
    address: SocketAddr,
    out: Sender<OutFrame>,
    out_queue: Mutex<Option<Receiver<OutFrame>>>,
    stream: Mutex<Option<TcpStream>>,
    closed: AtomicBool,
}

impl NetworkEnvironment {
    /// Binds the data address and starts accepting connections.
    pub fn start(config: NetworkConfig) -> Result<Self> {
        if config.secret.is_none() && config.tls.is_none() && !config.bind.ip().is_loopback() {
            return Err(SluiceError::Config(format!(
                "the data address {} is not on loopback, so it needs a cluster secret \
                 (--cluster-secret or SLUICE_CLUSTER_SECRET) or TLS certificates",
                config.bind
            )));
        }
        let listener = TcpListener::bind(config.bind).map_err(|e| {
            SluiceError::Config(format!(
                "cannot listen for data connections on {}: {e}",
                config.bind
            ))
        })?;
        let address = listener.local_addr().map_err(frame::io)?;
        let inner = Arc::new(Inner {
            id: config.task_manager,
            secret: config.secret,
            tls: config.tls,
            address,
            peers: Mutex::default(),
            channels: Mutex::default(),
            version: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
        });
        let acceptor = inner.clone();
        std::thread::Builder::new()
            .name("data-accept".into())
            .spawn(move || acceptor.accept_loop(listener))
            .map_err(|e| SluiceError::Internal(format!("cannot start the data acceptor: {e}")))?;
        info!(task_manager = %inner.id, %address, "data plane listening");
        Ok(Self { inner })
    }

    /// The address peers connect to.
    pub fn address(&self) -> SocketAddr {
        self.inner.address
    }

    /// This TaskManager's id.
    pub fn task_manager(&self) -> &str {
        &self.inner.id
    }

    /// Makes `peer` known at `address`, connecting to it if this
    /// TaskManager's id sorts first (else the peer connects here).
    pub fn connect(&self, peer: &str, address: SocketAddr) -> Result<()> {
        if peer == self.inner.id {
            return Err(SluiceError::Internal(format!(
                "TaskManager {peer} cannot have a data connection to itself"
            )));
        }
        let (peer, new) = self.inner.peer(peer, address);
        if new && self.inner.id.as_str() < peer.id.as_str() {
            let inner = self.inner.clone();
            std::thread::Builder::new()
                .name(format!("data-dial-{}", peer.id))
                .spawn(move || inner.dial(peer))
                .map_err(|e| SluiceError::Internal(format!("cannot start a data dialer: {e}")))?;
        }
        Ok(())
    }

    /// Registers the receiving end of `channel` from `peer` and announces
    /// `capacity` credits to it. `decode` turns a batch's bytes back into records.
    pub fn input_channel(
        &self,
        peer: &str,
        channel: ChannelId,
        capacity: u32,
        decode: fn(&[u8]) -> Result<RecordBatch>,
    ) -> Result<ChannelReceiver> {
        let peer = self.inner.known_peer(peer)?;
        let (data, rx) = unbounded();
        let credit = Arc::new(Credit::new());
        {
            let mut channels = self.inner.channels.lock().expect("channel table lock");
            self.inner.check_attempt(&mut channels, channel)?;
            let entry = Inbound { peer: peer.id.clone(), data, credit: credit.clone(), decode };
            if channels.inbound.insert(channel, entry).is_some() {
                return Err(SluiceError::Internal(format!("{channel} is registered twice")));
            }
        }
        credit.grant(capacity);
        // The peer learns of the channel from this first grant.
        peer.out
            .send(OutFrame::new(&Header::Credit(channel, capacity), Vec::new()))
            .map_err(|_| peer_gone(&peer.id))?;
        Ok(remote_receiver(rx, channel, credit, peer.out.clone()))
    }

    /// Registers the sending end of `channel` to `peer`. `encode` turns a
    /// batch into bytes; sends wait until the peer registers its end.
    pub fn output_channel(
        &self,
        peer: &str,
        channel: ChannelId,
        encode: fn(&RecordBatch) -> Result<Vec<u8>>,
    ) -> Result<ChannelSender> {
        let peer = self.inner.known_peer(peer)?;
        let mut channels = self.inner.channels.lock().expect("channel table lock");
        self.inner.check_attempt(&mut channels, channel)?;
        // The peer's announcement may have come first.
        let credit = channels.outbound(channel, &peer.id).credit.clone();
        Ok(remote_sender(channel, credit, peer.out.clone(), encode))
    }

    /// Ends every channel of `job`'s attempts up to `attempt` (the attempt
    /// finished, failed or was cancelled); their frames are refused from now on.
    pub fn release_attempt(&self, job: u64, attempt: u32) {
        let mut channels = self.inner.channels.lock().expect("channel table lock");
        let newest = channels.attempts.entry(job).or_insert(attempt);
        *newest = (*newest).max(attempt + 1);
        let newest = *newest;
        channels.drop_where(|c, _| c.job == job && c.attempt < newest);
        self.inner.version.fetch_add(1, Ordering::Release);
    }

    /// The peers with a data connection up now, sorted.
    pub fn connected_peers(&self) -> Vec<String> {
        let peers = self.inner.peers.lock().expect("peer table lock");
        let mut up: Vec<String> = peers
            .values()
            .filter(|p| p.stream.lock().expect("peer lock").is_some())
            .map(|p| p.id.clone())
            .collect();
        up.sort();
        up
    }

    /// Bytes written to all data connections (frames, length prefixes included).
    pub fn bytes_sent(&self) -> u64 {
        self.inner.bytes_sent.load(Ordering::Relaxed)
    }

    /// Bytes read from all data connections.
    pub fn bytes_received(&self) -> u64 {
        self.inner.bytes_received.load(Ordering::Relaxed)
    }

    /// Says goodbye to every peer, so each sees an orderly end and not a
    /// loss, and closes every connection; channels fail.
    pub fn shutdown(&self) {
        self.inner.shut_down.store(true, Ordering::Release);
        let peers: Vec<Arc<Peer>> =
            self.inner.peers.lock().expect("peer table lock").values().cloned().collect();
        for peer in &peers {
            let _ = peer.out.send(OutFrame::new(&Header::Goodbye, Vec::new()));
        }
        // A peer answers by closing its end; one that does not is cut off.
        let started = Instant::now();
        while !self.inner.peers.lock().expect("peer table lock").is_empty()
            && started.elapsed() < SHUTDOWN_GRACE
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        for peer in peers {
            self.inner.fail_peer(&peer.id, "the TaskManager shuts down", true);
        }
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.inner.address, Duration::from_millis(200));
    }
}

fn peer_gone(peer: &str) -> SluiceError {
    SluiceError::Internal(format!("the data connection to TaskManager {peer} is closed"))
}

impl Inner {
    fn peer(&self, id: &str, address: SocketAddr) -> (Arc<Peer>, bool) {
        let mut peers = self.peers.lock().expect("peer table lock");
        if let Some(p) = peers.get(id) {
            return (p.clone(), false);
        }
        let (out, queue) = unbounded();
        let peer = Arc::new(Peer {
            id: id.to_string(),
            address,
            out,
            out_queue: Mutex::new(Some(queue)),
            stream: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        peers.insert(id.to_string(), peer.clone());
        (peer, true)
    }

    fn known_peer(&self, id: &str) -> Result<Arc<Peer>> {
        self.peers.lock().expect("peer table lock").get(id).cloned().ok_or_else(|| {
            SluiceError::Internal(format!(
                "no data connection to TaskManager {id} (it was lost, or never connected)"
            ))
        })
    }

    /// Refuses a channel of an attempt older than the newest seen; a newer
    /// attempt ends the older ones' channels.
    fn check_attempt(&self, channels: &mut Channels, channel: ChannelId) -> Result<()> {
        let newest = channels.attempts.entry(channel.job).or_insert(channel.attempt);
        if channel.attempt < *newest {
            return Err(SluiceError::Internal(format!(
                "{channel} belongs to an attempt older than attempt {newest}"
            )));
        }
        if channel.attempt > *newest {
            *newest = channel.attempt;
            channels.drop_where(|c, _| c.job == channel.job && c.attempt < channel.attempt);
            self.version.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    fn is_stale(&self, channel: ChannelId) -> bool {
        self.channels.lock().expect("channel table lock").is_stale(channel)
    }

    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        for stream in listener.incoming() {
            if self.shut_down.load(Ordering::Acquire) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let inner = self.clone();
            let _ = std::thread::Builder::new().name("data-handshake".into()).spawn(move || {
                let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                let secured = inner.secure(&stream, None);
                match secured.and_then(|mut t| inner.handshake(&mut t).map(|id| (id, t))) {
                    Ok((id, transport)) => {
                        let address = stream.peer_addr().unwrap_or(inner.address);
                        let (mut peer, _) = inner.peer(&id, address);
                        if peer.out_queue.lock().expect("peer lock").is_none() {
                            // The peer dials only when it has lost its connection to us: ours
                            // is gone too, even if its end has not reached us yet.
                            inner.fail_peer(&id, "it connected again", false);
                            peer = inner.peer(&id, peer.address).0;
                        }
                        inner.attach(peer, stream, transport);
                    }
                    Err((claimed, e)) => {
                        warn!(task_manager = %inner.id, %remote, "refused a data connection: {e}");
                        // A peer expected here that cannot connect fails its channels now,
                        // as on the dialing side; a live connection is never touched.
                        let waiting = claimed.and_then(|id| {
                            inner.peers.lock().expect("peer table lock").get(&id).cloned()
                        });
                        if let Some(p) =
                            waiting.filter(|p| p.out_queue.lock().expect("peer lock").is_some())
                        {
                            inner.fail_peer(
                                &p.id,
                                &format!("its connection was refused: {e}"),
                                false,
                            );
                        }
                    }
                }
            });
        }
    }

    fn dial(self: Arc<Self>, peer: Arc<Peer>) {
        let started = Instant::now();
        let stream = loop {
            match TcpStream::connect_timeout(&peer.address, Duration::from_secs(2)) {
                Ok(s) => break s,
                Err(e)
                    if started.elapsed() < CONNECT_TIMEOUT
                        && !peer.closed.load(Ordering::Acquire) =>
                {
                    tracing::debug!(peer = %peer.id, "data connection to {} not yet possible: {e}", peer.address);
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    let reason =
                        format!("cannot connect to its data address {}: {e}", peer.address);
                    return self.fail_peer(&peer.id, &reason, false);
                }
            }
        };
        let secured = self.secure(&stream, Some(peer.address.ip()));
        match secured.and_then(|mut t| self.handshake(&mut t).map(|id| (id, t))) {
            Ok((id, transport)) if id == peer.id => self.attach(peer, stream, transport),
            Ok((id, _)) => self.fail_peer(
                &peer.id,
                &format!("{} answered as TaskManager {id}, not {}", peer.address, peer.id),
                false,
            ),
            Err((_, e)) => self.fail_peer(&peer.id, &format!("handshake failed: {e}"), false),
        }
    }

    /// The connection's transport: TLS when configured (as the client
    /// towards `dialing`, else as the server), plain TCP otherwise. The
    /// socket waits at most 10 s for each read until the handshakes are done.
    fn secure(
        &self,
        stream: &TcpStream,
        dialing: Option<IpAddr>,
    ) -> std::result::Result<Transport, (Option<String>, SluiceError)> {
        let setup = || -> Result<Transport> {
            stream.set_nodelay(true).map_err(frame::io)?;
            stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(frame::io)?;
            Ok(match &self.tls {
                Some(tls) => Transport::Tls(tls.handshake(stream, dialing)?),
                None => Transport::Plain(stream.try_clone().map_err(frame::io)?),
            })
        };
        setup().map_err(|e| (None, e))
    }

    /// Says hello, proves the secret, checks the peer's proof; returns the
    /// peer's id, or the error with the id the peer claimed, if it said hello.
    fn handshake(
        &self,
        transport: &mut Transport,
    ) -> std::result::Result<String, (Option<String>, SluiceError)> {
        let mut claimed = None;
        self.try_handshake(transport, &mut claimed).map_err(|e| (claimed, e))
    }

    fn try_handshake(&self, w: &mut Transport, claimed: &mut Option<String>) -> Result<String> {
        let mut nonce = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce);
        write_message(
            w,
            &Hello { version: frame::PROTOCOL_VERSION, task_manager: self.id.clone(), nonce },
        )?;
        let hello: Hello = read_message(w)?;
        *claimed = Some(hello.task_manager.clone());
        if hello.version != frame::PROTOCOL_VERSION {
            return Err(SluiceError::Internal(format!(
                "TaskManager {} speaks data protocol version {}, this one {}",
                hello.task_manager,
                hello.version,
                frame::PROTOCOL_VERSION
            )));
        }
        let secret = self.secret.as_deref();
        write_message(w, &Proof { mac: frame::prove(secret, &hello.nonce, &self.id) })?;
        let proof: Proof = read_message(w).map_err(|_| {
            SluiceError::Config(format!(
                "TaskManager {} closed the connection during the handshake (a wrong cluster secret?)",
                hello.task_manager
            ))
        })?;
        if !frame::verify(secret, &nonce, &hello.task_manager, &proof.mac) {
            return Err(SluiceError::Config(format!(
                "a wrong cluster secret from the peer calling itself TaskManager {}",
                hello.task_manager
            )));
        }
        w.socket().set_read_timeout(None).map_err(frame::io)?;
        Ok(hello.task_manager)
    }

    /// Starts the connection's writer and reader.
    fn attach(self: &Arc<Self>, peer: Arc<Peer>, stream: TcpStream, transport: Transport) {
        let Some(queue) = peer.out_queue.lock().expect("peer lock").take() else {
            warn!(peer = %peer.id, "refused a second data connection from TaskManager {}", peer.id);
            return;
        };
        let Ok(write_half) = transport.try_clone() else {
            return self.fail_peer(
                &peer.id,
                "cannot share its socket between reader and writer",
                false,
            );
        };
        *peer.stream.lock().expect("peer lock") = Some(stream);
        info!(task_manager = %self.id, peer = %peer.id, "data connection up");
        let (inner, writer_peer) = (self.clone(), peer.clone());
        let _ =
            std::thread::Builder::new().name(format!("data-out-{}", peer.id)).spawn(move || {
                if let Err(e) = inner.write_loop(&writer_peer, queue, write_half) {
                    inner.fail_peer(&writer_peer.id, &format!("writing failed: {e}"), false);
                }
            });
        let inner = self.clone();
        let _ = std::thread::Builder::new().name(format!("data-in-{}", peer.id)).spawn(move || {
            match inner.read_loop(&peer.id, transport) {
                Ok(true) => inner.fail_peer(&peer.id, "it shut down", true),
                Ok(false) => inner.fail_peer(&peer.id, "it closed the connection", false),
                Err(e) => inner.fail_peer(&peer.id, &format!("reading failed: {e}"), false),
            }
        });
    }

    fn write_loop(&self, peer: &Peer, queue: Receiver<OutFrame>, stream: Transport) -> Result<()> {
        let mut w = BufWriter::with_capacity(IO_BUFFER_BYTES, stream);
        loop {
            let frame = match queue.try_recv() {
                Ok(f) => f,
                Err(TryRecvError::Disconnected) => return Ok(()),
                Err(TryRecvError::Empty) => {
                    // Nothing more to batch with: send what is buffered.
                    std::io::Write::flush(&mut w).map_err(frame::io)?;
                    match queue.recv_timeout(Duration::from_millis(500)) {
                        Ok(f) => f,
                        Err(RecvTimeoutError::Timeout) if !peer.closed.load(Ordering::Acquire) => {
                            continue
                        }
                        Err(_) => return Ok(()),
                    }
                }
            };
            frame.write_to(&mut w).map_err(frame::io)?;
            self.bytes_sent.fetch_add(frame.wire_len() as u64, Ordering::Relaxed);
            if frame.is_goodbye() {
                std::io::Write::flush(&mut w).map_err(frame::io)?;
                return Ok(());
            }
        }
    }

    /// Delivers frames until the connection ends; `true` if the peer said goodbye.
    fn read_loop(&self, peer: &str, stream: Transport) -> Result<bool> {
        let mut r = BufReader::with_capacity(IO_BUFFER_BYTES, stream);
        let mut buf = Vec::new();
        // Entries looked up once per channel, not once per frame.
        let mut inbound: HashMap<ChannelId, Inbound> = HashMap::new();
        let mut version = self.version.load(Ordering::Acquire);
        while let Some((header, payload)) = read_frame(&mut r, &mut buf)? {
            fail::fail_point!("sluice::network::read", |_| Err(SluiceError::external(
                "data connection",
                "injected connection loss"
            )));
            self.bytes_received.fetch_add((4 + buf.len()) as u64, Ordering::Relaxed);
            let now = self.version.load(Ordering::Acquire);
            if now != version {
                inbound.clear();
                version = now;
            }
            let (channel, element) = match header {
                Header::Credit(channel, n) => {
                    self.granted(peer, channel, n);
                    continue;
                }
                Header::Goodbye => return Ok(true),
                Header::Close(channel) => {
                    inbound.remove(&channel);
                    self.closed(peer, channel);
                    continue;
                }
                Header::Records(c) => (c, None),
                Header::Watermark(c, w) => (c, Some(StreamElement::Watermark(w))),
                Header::Barrier(c, b) => (c, Some(StreamElement::Barrier(b))),
                Header::IdleStatus(c, idle) => (c, Some(StreamElement::IdleStatus(idle))),
                Header::EndOfInput(c) => (c, Some(StreamElement::EndOfInput)),
            };
            let entry = match inbound.entry(channel) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => {
                    let found = self
                        .channels
                        .lock()
                        .expect("channel table lock")
                        .inbound
                        .get(&channel)
                        .cloned();
                    match found {
                        Some(entry) if entry.peer == peer => v.insert(entry),
                        _ if self.is_stale(channel) => {
                            tracing::debug!(
                                peer,
                                "refused a frame of {channel}: its attempt is over"
                            );
                            continue;
                        }
                        _ => {
                            return Err(SluiceError::Internal(format!(
                                "TaskManager {peer} sent on {channel}, which was never opened to it"
                            )))
                        }
                    }
                }
            };
            let element = match element {
                Some(e) => e,
                None => {
                    if !entry.credit.try_take().unwrap_or(false) {
                        return Err(SluiceError::Internal(format!(
                            "TaskManager {peer} sent records on {channel} without credit"
                        )));
                    }
                    StreamElement::Records((entry.decode)(&buf[payload])?)
                }
            };
            // The receiving task may be gone (it failed or was cancelled): drop.
            let _ = entry.data.send(element);
        }
        Ok(false)
    }

    fn granted(&self, peer: &str, channel: ChannelId, n: u32) {
        let mut channels = self.channels.lock().expect("channel table lock");
        if !channels.is_stale(channel) {
            channels.outbound(channel, peer).credit.grant(n);
        }
    }

    /// `peer` dropped its end of `channel`: drop ours, so our task sees
    /// the channel close (a receiver) or stops waiting for credit (a sender).
    fn closed(&self, peer: &str, channel: ChannelId) {
        let mut channels = self.channels.lock().expect("channel table lock");
        if channels.inbound.get(&channel).is_some_and(|i| i.peer == peer) {
            channels.inbound.remove(&channel);
            return;
        }
        // Kept closed, not removed: a sender that registers after the
        // receiver went must fail at once, not wait for credit forever.
        let o = channels.outbound(channel, peer);
        if o.peer == peer {
            o.credit.close();
        }
    }

    /// The connection to `peer` is over: every channel with it fails.
    /// `orderly`: a shutdown, logged as such rather than as a loss.
    fn fail_peer(&self, peer: &str, reason: &str, orderly: bool) {
        let Some(p) = self.peers.lock().expect("peer table lock").remove(peer) else { return };
        p.closed.store(true, Ordering::Release);
        if let Some(s) = p.stream.lock().expect("peer lock").take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.channels.lock().expect("channel table lock").drop_where(|_, p| p == peer);
        self.version.fetch_add(1, Ordering::Release);
        if orderly || self.shut_down.load(Ordering::Acquire) {
            info!(task_manager = %self.id, peer, "data connection closed: {reason}");
        } else {
            warn!(task_manager = %self.id, peer, "data connection lost: {reason}");
        }
    }
}

/// A data connection's byte stream: plain TCP or TLS over it.
#[derive(Debug)]
enum Transport {
    Plain(TcpStream),
    Tls(TlsStream),
}

impl Transport {
    /// A second handle on the same connection, for the other thread.
    fn try_clone(&self) -> std::io::Result<Self> {
        Ok(match self {
            Transport::Plain(s) => Transport::Plain(s.try_clone()?),
            Transport::Tls(s) => Transport::Tls(s.try_clone()?),
        })
    }

    /// The TCP socket underneath.
    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => s.socket(),
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}
