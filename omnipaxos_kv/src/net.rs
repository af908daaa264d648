//! The wire protocol: length-delimited bincode frames over TCP, the connection handshake and the
//! message types.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of bincode. Frames longer
//! than [`MAX_FRAME_LEN`] are refused before anything is allocated, and decoding is bounded by
//! the same limit, so a garbage length or a garbage vector length cannot exhaust memory.
//!
//! The first frame on a connection is a [`Hello`] from the connecting side; the server answers
//! with a [`Welcome`]. Servers connect only to servers with a lower id, so each pair of servers
//! shares exactly one connection.

use crate::kv::{ClientId, Command, CommandId, KVCommand, KVResult, NodeId};
use bincode::Options;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream of a connection: plain TCP or TLS over TCP.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}
/// A connection's stream, whatever its transport.
pub type BoxStream = Box<dyn AsyncStream>;
/// The reading half of a [`BoxStream`], buffered: a frame's length prefix and body, and the
/// frames that arrived with them, come in one read from the socket instead of two per frame.
pub type StreamReader = tokio::io::BufReader<tokio::io::ReadHalf<BoxStream>>;
/// The writing half of a [`BoxStream`] (writers batch their frames themselves).
pub type StreamWriter = tokio::io::WriteHalf<BoxStream>;

/// Bytes a [`StreamReader`] reads from the socket at once at most.
const READ_BUFFER: usize = 64 * 1024;

/// Splits a connection's stream into its buffered reading half and its writing half.
pub fn split(stream: BoxStream) -> (StreamReader, StreamWriter) {
    let (r, w) = tokio::io::split(stream);
    (tokio::io::BufReader::with_capacity(READ_BUFFER, r), w)
}

/// Largest frame accepted or sent on a client connection and in a handshake (bytes of
/// bincode after the length prefix).
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Largest frame between two servers, once the handshake is done: catching up a follower that
/// was down for a while sends a long suffix of the log in one message.
pub const MAX_PEER_FRAME_LEN: usize = 512 * 1024 * 1024;

/// A protocol error on one connection; the connection is closed, the process goes on.
#[derive(Debug)]
pub enum FrameError {
    /// The socket failed or closed.
    Io(io::Error),
    /// The length prefix announced more than [`MAX_FRAME_LEN`] bytes.
    TooLong(usize),
    /// The frame is not a valid encoding of the expected message.
    Decode(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "connection error: {e}"),
            FrameError::TooLong(n) => {
                write!(
                    f,
                    "frame of {n} bytes exceeds the limit of {MAX_FRAME_LEN} bytes"
                )
            }
            FrameError::Decode(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

fn codec(limit: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(limit as u64)
        .reject_trailing_bytes()
}

/// Encodes `msg` as one frame (length prefix included) of at most [`MAX_FRAME_LEN`] bytes.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    encode_limited(msg, MAX_FRAME_LEN)
}

/// Encodes `msg` as one frame of at most `limit` bytes.
pub fn encode_limited<T: Serialize>(msg: &T, limit: usize) -> Result<Vec<u8>, FrameError> {
    let body = codec(limit)
        .serialize(msg)
        .map_err(|e| FrameError::Decode(e.to_string()))?;
    if body.len() > limit {
        return Err(FrameError::TooLong(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a frame body (without its length prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    codec(body.len())
        .deserialize(body)
        .map_err(|e| FrameError::Decode(e.to_string()))
}

/// Reads one frame of at most [`MAX_FRAME_LEN`] bytes and decodes it.
pub async fn read_frame<T: DeserializeOwned, R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<T, FrameError> {
    read_frame_limited(r, MAX_FRAME_LEN).await
}

/// Reads one frame of at most `limit` bytes and decodes it. Decoding never allocates more
/// than the frame's length, whatever lengths the frame claims inside.
pub async fn read_frame_limited<T: DeserializeOwned, R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<T, FrameError> {
    let len = r.read_u32().await? as usize;
    if len > limit {
        return Err(FrameError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode(&body)
}

/// Encodes and writes one frame.
pub async fn write_frame<T: Serialize, W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let bytes = encode(msg)?;
    w.write_all(&bytes).await?;
    Ok(())
}

/// Protocol version carried in the handshake.
pub const PROTOCOL_VERSION: u32 = 2;

/// The first frame on every connection, from the side that connected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Hello {
    /// A server of the cluster with this id.
    Server {
        /// Protocol version ([`PROTOCOL_VERSION`]).
        version: u32,
        /// The connecting server's id.
        id: NodeId,
    },
    /// A client.
    Client {
        /// Protocol version ([`PROTOCOL_VERSION`]).
        version: u32,
        /// The client's id.
        client_id: ClientId,
    },
}

/// The server's answer to a [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Welcome {
    /// Accepted; the answering server's id.
    Accepted(NodeId),
    /// Refused, with the reason; the connection is closed after this frame.
    Refused(String),
}

/// Messages between servers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerMessage {
    /// An OmniPaxos protocol message.
    Paxos(omnipaxos::messages::Message<Command>),
}

/// Requests from a client to a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Append a command to the log; the server answers once it is decided.
    Append {
        /// The client's command id.
        id: CommandId,
        /// All commands of this client below this id have been answered.
        acked_below: CommandId,
        /// The operation.
        cmd: KVCommand,
    },
    /// Ask for the server's view of the cluster (answered at once with [`ServerReply::Status`]).
    Status,
}

/// A server's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// The answering server.
    pub id: NodeId,
    /// The leader it knows of, if any.
    pub leader: Option<NodeId>,
    /// Length of its decided log.
    pub decided_idx: usize,
    /// Number of log entries applied to its map.
    pub applied: usize,
    /// Index below which its log is compacted into a snapshot of the map.
    pub compacted_idx: usize,
    /// Servers it currently has a connection to.
    pub peers_connected: Vec<NodeId>,
}

/// Replies from a server to a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ServerReply {
    /// Command `id` was decided and applied with this result.
    Done(CommandId, KVResult),
    /// Command `id` was refused (e.g. the cluster is being reconfigured); the client may retry.
    Refused(CommandId, String),
    /// Answer to [`ClientRequest::Status`].
    Status(StatusInfo),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_frames_are_errors() {
        let msg = ClientRequest::Append {
            id: 3,
            acked_below: 2,
            cmd: KVCommand::Put("k".into(), "v".into()),
        };
        let bytes = encode(&msg).unwrap();
        let mut r = &bytes[..];
        let back: ClientRequest = read_frame(&mut r).await.unwrap();
        assert!(matches!(back, ClientRequest::Append { id: 3, .. }));

        let mut huge = &(u32::MAX).to_be_bytes()[..];
        let e = read_frame::<ClientRequest, _>(&mut huge).await.unwrap_err();
        assert!(matches!(e, FrameError::TooLong(_)), "{e}");

        // A frame claiming a string of 2^60 bytes must fail to decode without allocating it.
        let mut body = vec![0u8]; // variant Append
        body.extend_from_slice(&[1, 1, 0]); // id, acked_below, KVCommand::Put
        body.push(253);
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let mut r = &frame[..];
        let e = read_frame::<ClientRequest, _>(&mut r).await.unwrap_err();
        assert!(matches!(e, FrameError::Decode(_)), "{e}");

        let garbage = [0u8, 0, 0, 3, 0xff, 0xfe, 0xfd];
        let mut r = &garbage[..];
        let e = read_frame::<Hello, _>(&mut r).await.unwrap_err();
        assert!(matches!(e, FrameError::Decode(_)), "{e}");
    }
}
