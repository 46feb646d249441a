"""The exceptions glstream raises: one base class, one class per kind of failure."""

from __future__ import annotations

__all__ = ["Error", "ProtocolError", "Timeout", "Closed", "ConnectError"]


class Error(Exception):
    """Base class of every exception this package raises on purpose."""


class ProtocolError(Error, ValueError):
    """The stream sent something that is not a frame: a bad or unknown header, sizes that do not
    add up or exceed the bounds (1 GiB), a compressed strip that does not decode to exactly its
    rows. No pixels are returned from such a frame, ever."""


class Timeout(Error, TimeoutError):
    """No whole frame arrived within ``timeout`` seconds."""


class Closed(Error, ConnectionError):
    """The producer went away mid-frame (the connection was closed or reset part-way through a
    header or payload). A stream that ends at a frame boundary is not an error: iteration just
    stops."""


class ConnectError(Error, ConnectionError):
    """The stream could not be opened: connection refused, no such socket file, a shared-memory
    service that does not appear or carries other types, a bad URL's endpoint."""
