//! `recv --zmq-*`: the consumer side of the ZeroMQ message contract (see `stream::zmq` for the
//! producer side and the contract): a PULL or SUB socket, every message checked against it.

use std::time::Duration;

use crate::stream::protocol::{Decoded, MAX_FRAME_BYTES};
use crate::stream::socket::OwnedPath;
use crate::stream::zmq::{Opened, RecvPattern, ZmqError, check_endpoint, decode_parts, open};

/// The consumer side of the contract: a PULL or SUB socket, and two messages reused for every
/// frame.
pub struct Receiver {
    // Dropped after the socket (field order), with linger 0: a consumer has nothing to deliver.
    socket: zmq::Socket,
    _context: zmq::Context,
    header: zmq::Message,
    payload: zmq::Message,
    bound: Vec<String>,
    // Removed once the socket is closed.
    _owned: Vec<OwnedPath>,
}

/// One frame as received: the decoded header and the payload, borrowed from the receiver.
pub struct Parts<'a> {
    /// What part 1 says.
    pub header: Decoded,
    /// Part 1, whole (a version 2 header's strip table).
    pub header_bytes: &'a [u8],
    /// Part 2.
    pub payload: &'a [u8],
    /// Bytes of both parts.
    pub bytes: u64,
}

/// Opens a consumer socket (`hwm` frames of receive buffer per peer), SUB subscribed to every
/// frame.
pub fn receiver(
    pattern: RecvPattern,
    bind: &[String],
    connect: &[String],
    hwm: u32,
) -> Result<Receiver, ZmqError> {
    for endpoint in bind {
        check_endpoint("--zmq-bind", endpoint)?;
    }
    for endpoint in connect {
        check_endpoint("--zmq-connect", endpoint)?;
    }
    let context = zmq::Context::new();
    let (kind, what) = match pattern {
        RecvPattern::Pull => (zmq::PULL, "PULL"),
        RecvPattern::Sub => (zmq::SUB, "SUB"),
    };
    let hwm = i32::try_from(hwm).unwrap_or(i32::MAX);
    // The payload part is the largest a producer sends; `recv` refuses more over TCP too.
    let max_part_bytes = MAX_FRAME_BYTES as i64;
    let Opened {
        socket,
        bound,
        owned,
    } = open(
        &context,
        kind,
        what,
        bind,
        connect,
        max_part_bytes,
        |socket| {
            socket.set_rcvhwm(hwm)?;
            if pattern == RecvPattern::Sub {
                socket.set_subscribe(b"")?;
            }
            Ok(())
        },
    )?;
    Ok(Receiver {
        socket,
        _context: context,
        header: zmq::Message::new(),
        payload: zmq::Message::new(),
        bound,
        _owned: owned,
    })
}

impl Receiver {
    /// The endpoints as bound (a `*` port resolved).
    pub fn bound(&self) -> &[String] {
        &self.bound
    }

    /// Waits up to `wait` for a message and checks it against the contract; `Ok(None)` when
    /// none came. A message that breaks the contract is read whole and returned as an error for
    /// which [`ZmqError::is_from_peer`] holds: the socket can go on.
    pub fn recv(&mut self, wait: Duration) -> Result<Option<Parts<'_>>, ZmqError> {
        match self.socket.poll(zmq::POLLIN, wait.as_millis() as i64) {
            Ok(0) | Err(zmq::Error::EINTR) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(ZmqError::Recv(e)),
        }
        match self.socket.recv(&mut self.header, zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(None),
            Err(e) => return Err(ZmqError::Recv(e)),
        }
        if !self.header.get_more() {
            return Err(ZmqError::Parts(1));
        }
        // The parts of a message arrive together: the second is already here.
        self.socket
            .recv(&mut self.payload, 0)
            .map_err(ZmqError::Recv)?;
        if self.payload.get_more() {
            let mut parts = 2;
            let mut rest = zmq::Message::new();
            while self.socket.recv(&mut rest, 0).is_ok() {
                parts += 1;
                if !rest.get_more() {
                    break;
                }
            }
            return Err(ZmqError::Parts(parts));
        }
        let header = decode_parts(&self.header, &self.payload)?;
        Ok(Some(Parts {
            header,
            header_bytes: &self.header,
            payload: &self.payload,
            bytes: (self.header.len() + self.payload.len()) as u64,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("glstream-recv-zmq-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_ipc_path_that_is_not_a_stale_socket_is_left_alone() {
        let dir = scratch("ipc-refuse");
        let file = dir.join("file");
        std::fs::write(&file, b"keep me").unwrap();
        let endpoint = format!("ipc://{}", file.display());
        let error = receiver(RecvPattern::Pull, std::slice::from_ref(&endpoint), &[], 2)
            .err()
            .unwrap();
        let chain = format!("{:#}", anyhow::Error::new(error));
        assert!(chain.contains("exists and is not a socket"), "{chain}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        // A live socket (this listener) is refused too, and keeps working.
        let live = dir.join("live.sock");
        let listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let endpoint = format!("ipc://{}", live.display());
        let error = receiver(RecvPattern::Pull, std::slice::from_ref(&endpoint), &[], 2)
            .err()
            .unwrap();
        let chain = format!("{:#}", anyhow::Error::new(error));
        assert!(chain.contains("another server is listening"), "{chain}");
        assert!(
            std::fs::symlink_metadata(&live)
                .unwrap()
                .file_type()
                .is_socket()
        );
        drop(listener);
        // Now it is stale: replaced, and removed when the receiver goes.
        let pull = receiver(RecvPattern::Pull, std::slice::from_ref(&endpoint), &[], 2).unwrap();
        assert!(
            std::fs::symlink_metadata(&live)
                .unwrap()
                .file_type()
                .is_socket()
        );
        drop(pull);
        assert!(!live.exists(), "the socket file was left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
