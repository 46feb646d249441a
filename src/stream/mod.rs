//! Everything between a finished frame and a consumer: the wire headers ([`protocol`]), the
//! shared frame slots the outputs read from ([`hub`]), the seam every output implements
//! ([`output`]) and the socket outputs ([`socket`]: TCP, Unix, `--connect`, stdout; [`shm`]: iceoryx2 shared memory). Nothing here
//! calls GL or parses a command line; frames arrive as values that implement [`hub::Frame`].

pub mod hub;
pub mod output;
pub mod protocol;
pub mod shm;
pub mod socket;
