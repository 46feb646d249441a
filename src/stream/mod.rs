//! Everything between a finished frame and a consumer: the wire headers ([`protocol`]), the
//! shared frame slots the outputs read from ([`hub`]), the seam every output implements
//! ([`output`]), the socket outputs ([`socket`]: TCP, Unix, `--connect`, stdout), the ZeroMQ
//! outputs ([`zmq`]: push and pub, and the consumer side of their message contract), the
//! shared-memory output ([`shm`]: an iceoryx2 service), the HTTP output ([`http`]: a page, MJPEG,
//! PNG, Prometheus metrics) and the counters it reports ([`metrics`]). Nothing here calls GL or
//! parses a command line; frames arrive as values that implement [`hub::Frame`].

pub(crate) mod encode;
pub(crate) mod http;
pub mod hub;
pub(crate) mod metrics;
pub mod output;
pub mod protocol;
pub(crate) mod shm;
pub(crate) mod socket;
pub(crate) mod stop;
pub(crate) mod zmq;

/// `1 client`, `2 clients`: a count and its noun, for log lines and status text.
pub(crate) fn plural(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

/// The shared-memory contract: the user header type every sample carries, its iceoryx2 type
/// name, its size and its flag bits.
pub use shm::{FLAG_TOP_DOWN, FRAME_HEADER_LEN, FRAME_HEADER_TYPE_NAME, FrameHeader};

/// How many connections beyond `--max-clients` the HTTP output keeps open at once (for the
/// tests that fill them).
pub use http::SPARE_CONNECTIONS;
