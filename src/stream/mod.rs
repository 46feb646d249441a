//! Everything between a finished frame and a consumer: the wire headers ([`protocol`]), the
//! shared frame slots the outputs read from ([`hub`]), the seam every output implements
//! ([`output`]), the socket outputs ([`socket`]: TCP, Unix, `--connect`, stdout), the ZeroMQ
//! outputs ([`zmq`]: push and pub, and the consumer side of their message contract), the
//! shared-memory output ([`shm`]: an iceoryx2 service), the HTTP output ([`http`]: a page, MJPEG,
//! PNG, Prometheus metrics) and the counters it reports ([`metrics`]). Nothing here calls GL or
//! parses a command line; frames arrive as values that implement [`hub::Frame`].

pub mod http;
pub mod hub;
pub mod metrics;
pub mod output;
pub mod protocol;
pub mod shm;
pub mod socket;
pub mod stop;
pub mod zmq;

/// `1 client`, `2 clients`: a count and its noun, for log lines and status text.
pub fn plural(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}
