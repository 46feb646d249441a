"""The client of glstream's control channel (``glstream --control ENDPOINT``, docs/control.md)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from ._errors import ConnectError, Timeout

__all__ = ["Control"]


class Control:
    """Sends control requests to a glstream producer and returns its answers.

        with glstream.Control("tcp://127.0.0.1:5555") as control:
            answer = control.send(camera={"eye": [3, 1, 2]}, frame=10)
            # {"id": 1, "ok": True, "frame": 10}: the frame carrying request id 1 is out

    ``url`` is the endpoint ``--control`` bound: ``tcp://HOST:PORT`` or ``ipc:///PATH``
    (``zmq+tcp://`` and ``zmq+ipc://`` are taken too). ``send(**request)`` takes the request's
    keys (``frame``, ``uniforms``, ``camera``, ``nodes``; see docs/control.md), gives it the
    next ``id`` unless one is given, and returns the answer as a dict: ``ok`` is False, with an
    ``error`` line, when the request was refused (nothing of it applied). Frames that answer a
    request carry its id (``frame.request_id``). ``timeout`` (seconds, None: wait for ever)
    bounds each answer; on a timeout ``Timeout`` is raised and the connection is made afresh.
    Needs the ``[zmq]`` extra (pyzmq).
    """

    def __init__(self, url: str, timeout: float | None = None) -> None:
        try:
            import zmq
        except ImportError as e:  # pragma: no cover - the [zmq] extra
            raise ConnectError("glstream.Control needs pyzmq: pip install 'glstream[zmq]'") from e
        for prefix in ("zmq+tcp://", "zmq+ipc://"):
            if url.startswith(prefix):
                url = url[len("zmq+"):]
        if not url.startswith(("tcp://", "ipc://")):
            raise ConnectError(f"{url!r}: a control endpoint is tcp://HOST:PORT or ipc:///PATH")
        self._zmq = zmq
        self._url = url
        self._timeout = timeout
        self._context = zmq.Context.instance()
        self._ids = itertools.count(1)
        self._socket = self._connect()

    def _connect(self) -> Any:
        zmq = self._zmq
        socket = self._context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        if self._timeout is not None:
            socket.setsockopt(zmq.RCVTIMEO, max(1, int(self._timeout * 1000)))
        socket.connect(self._url)
        return socket

    def send(self, **request: Any) -> dict[str, Any]:
        """Sends one request (its keys as keywords) and returns the answer."""
        request.setdefault("id", next(self._ids))
        self._socket.send(json.dumps(request).encode())
        try:
            answer: dict[str, Any] = json.loads(self._socket.recv())
        except self._zmq.Again:
            # A REQ socket that sent without an answer cannot send again: start afresh.
            self._socket.close(0)
            self._socket = self._connect()
            raise Timeout(f"no answer to request {request['id']} within {self._timeout} s") from None
        return answer

    def close(self) -> None:
        """Closes the connection."""
        self._socket.close(0)

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
