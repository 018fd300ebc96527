//! One connection to one broker, speaking the Kafka protocol through the
//! `kafka-protocol` crate's codecs: size-prefixed frames, request headers
//! with correlation ids, versions negotiated with ApiVersions. Requests may
//! be pipelined: responses come back in the order the requests were sent.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use sluice_core::{Result, SluiceError};

const CLIENT_ID: &str = "sluice";

/// A broker connection.
pub(crate) struct Connection {
    address: String,
    stream: TcpStream,
    next_correlation: i32,
    /// Correlation ids and API keys of the requests whose responses are still due, in order.
    in_flight: VecDeque<(i32, i16, i16)>,
    /// (min, max) version per API key, as the broker supports them.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to `address` and learns the versions the broker speaks.
    pub(crate) fn open(address: &str, timeout: Duration) -> Result<Self> {
        let unreachable = |e: std::io::Error| {
            SluiceError::external(format!("kafka broker {address}"), format!("cannot connect: {e}"))
        };
        let addr = address.to_socket_addrs().map_err(unreachable)?.next().ok_or_else(|| {
            SluiceError::Config(format!("kafka broker '{address}' has no address"))
        })?;
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
        stream.set_nodelay(true).map_err(unreachable)?;
        stream.set_read_timeout(Some(timeout * 3)).map_err(unreachable)?;
        let mut conn = Self {
            address: address.to_string(),
            stream,
            next_correlation: 1,
            in_flight: VecDeque::new(),
            versions: HashMap::new(),
        };
        let versions = conn.call(0, ApiVersionsRequest::default())?;
        if let Some(e) = kafka_protocol::error::ResponseError::try_from_code(versions.error_code) {
            return Err(conn.error("ApiVersions", &e.to_string()));
        }
        conn.versions =
            versions.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(conn)
    }

    /// An error of this broker.
    pub(crate) fn error(&self, what: &str, message: &str) -> SluiceError {
        SluiceError::external(
            format!("kafka broker {}", self.address),
            format!("{what}: {message}"),
        )
    }

    /// The highest version of `R` both sides speak, at most `cap`.
    pub(crate) fn version<R: Request>(&self, cap: i16) -> Result<i16> {
        let ours = R::VERSIONS;
        let (min, max) = self.versions.get(&R::KEY).copied().ok_or_else(|| {
            self.error(
                &format!("API {:?}", ApiKey::try_from(R::KEY)),
                "not supported by the broker",
            )
        })?;
        let version = max.min(cap).min(ours.max);
        if version < min.max(ours.min) {
            return Err(self.error(
                &format!("API {:?}", ApiKey::try_from(R::KEY)),
                &format!("the broker speaks versions {min}..={max}, Sluice {}..={cap}", ours.min),
            ));
        }
        Ok(version)
    }

    /// Sends `request` at `version` without waiting for the response.
    pub(crate) fn send<R: Request>(&mut self, version: i16, request: &R) -> Result<()> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let encoded = header
            .encode(&mut buf, R::header_version(version))
            .and_then(|()| request.encode(&mut buf, version));
        encoded
            .map_err(|e| SluiceError::Serialization(format!("encoding a Kafka request: {e}")))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&buf).map_err(|e| self.error("sending a request", &e.to_string()))?;
        self.in_flight.push_back((correlation, R::KEY, version));
        Ok(())
    }

    /// Requests whose responses are still due.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Reads the response to the oldest request in flight, which must be an `R`.
    pub(crate) fn receive<R: Request>(&mut self) -> Result<R::Response> {
        let (correlation, key, version) = self
            .in_flight
            .pop_front()
            .ok_or_else(|| SluiceError::Internal("a Kafka response with no request".into()))?;
        debug_assert_eq!(key, R::KEY);
        let mut size = [0u8; 4];
        let read = |stream: &mut TcpStream, buf: &mut [u8]| stream.read_exact(buf);
        read(&mut self.stream, &mut size)
            .map_err(|e| self.error("reading a response", &e.to_string()))?;
        let mut frame = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        read(&mut self.stream, &mut frame)
            .map_err(|e| self.error("reading a response", &e.to_string()))?;
        let mut buf = bytes::Bytes::from(frame);
        let decoded = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .and_then(|h| Ok((h, R::Response::decode(&mut buf, version)?)));
        let (header, response) = decoded
            .map_err(|e| SluiceError::Serialization(format!("decoding a Kafka response: {e}")))?;
        if header.correlation_id != correlation {
            return Err(self.error(
                "reading a response",
                &format!("correlation id {} where {correlation} was due", header.correlation_id),
            ));
        }
        Ok(response)
    }

    /// Sends `request` at the highest version up to `cap` and waits for its response.
    pub(crate) fn call<R: Request>(&mut self, cap: i16, request: R) -> Result<R::Response> {
        let version =
            if R::KEY == ApiKey::ApiVersions as i16 { cap } else { self.version::<R>(cap)? };
        self.call_at(version, request)
    }

    /// Sends `request` at `version` and waits for its response.
    pub(crate) fn call_at<R: Request>(&mut self, version: i16, request: R) -> Result<R::Response> {
        if !self.in_flight.is_empty() {
            return Err(SluiceError::Internal(
                "a Kafka call on a connection with requests in flight".into(),
            ));
        }
        self.send(version, &request)?;
        self.receive::<R>()
    }
}
