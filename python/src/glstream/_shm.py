"""Shared-memory streams (``glstream --shm SERVICE``) over iceoryx2: the frame's pixels are a
numpy view of the sample in shared memory (no copy), handed back when the next frame is taken.
Between frames it waits on the event service glstream notifies after every frame, as
``glstream recv --shm`` does, with a 100 ms bound that notices a producer killed outright."""

from __future__ import annotations

import ctypes
import time
from typing import Any, Optional

import numpy as np

from ._errors import ConnectError, ProtocolError, Timeout
from ._formats import FORMATS, MAX_BYTES
from ._stream import Frame
from ._shm_header import FrameHeader

try:
    import iceoryx2 as iox2
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError(
        f'shm:// URLs need the [shm] extra (pip install "glstream[shm]", iceoryx2==0.10.0): {e}'
    ) from e

__all__ = ["FrameHeader", "ShmSource"]

#: How long one wait on the frame event lasts at most: a producer killed with SIGKILL notifies
#: nobody, and is noticed at the next look at the publisher count.
LIVENESS_CHECK = 0.1
#: Between attempts to open a service that does not exist yet (iceoryx2 has no event for it).
OPEN_RETRY = 0.02


class ShmSource:
    def __init__(self, service: str, open_timeout: float) -> None:
        iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
        self._name = service
        try:
            name = iox2.ServiceName.new(service)
        except Exception as e:
            raise ConnectError(f"shm://{service}: not a valid iceoryx2 service name: {e}") from None
        # Signal handling stays the program's: Ctrl-C raises KeyboardInterrupt as usual.
        self._node = (
            iox2.NodeBuilder.new()
            .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
            .create(iox2.ServiceType.Ipc)
        )
        deadline = time.monotonic() + open_timeout
        while True:
            try:
                # Only the two types, never open_or_create: glstream chooses everything else.
                self._service = (
                    self._node.service_builder(name)
                    .publish_subscribe(iox2.Slice[ctypes.c_uint8])
                    .user_header(FrameHeader)
                    .open()
                )
                break
            except iox2.PublishSubscribeOpenError as e:
                reason = e.args[0] if e.args else repr(e)
                if reason == "DoesNotExist" and time.monotonic() < deadline:
                    time.sleep(OPEN_RETRY)
                    continue
                if reason == "DoesNotExist":
                    raise ConnectError(
                        f"shm://{service}: no such service within {open_timeout:g} s "
                        f"(is `glstream --shm {service}` running?)"
                    ) from None
                if reason == "IncompatibleTypes":
                    reason = "it carries other payload or header types (not a glstream stream)"
                raise ConnectError(f"cannot open shm://{service}: {reason}") from None
        # Looked at before subscribing: a publisher that is here now and gone at the first
        # read, with nothing queued, has ended the stream (rather than not started it).
        self._publisher_seen = self._service.dynamic_config.number_of_publishers > 0
        try:
            self._subscriber = self._service.subscriber_builder().create()
        except Exception as e:
            raise ConnectError(f"cannot subscribe to shm://{service}: {e}") from None
        try:
            event = self._node.service_builder(name).event().open_or_create()
            self._listener: Any = event.listener_builder().create()
            self._event = event
        except Exception:  # then it polls, as recv --shm does
            self._listener = None
        self._sample: Any = None
        self._wait = iox2.Duration.from_secs_f64(LIVENESS_CHECK)

    def close(self) -> None:
        self._release()
        for attribute in ("_listener", "_subscriber"):
            port = getattr(self, attribute, None)
            if port is not None:
                setattr(self, attribute, None)
                port.delete()

    def _release(self) -> None:
        if self._sample is not None:
            sample, self._sample = self._sample, None
            sample.delete()  # back to glstream: the previous frame's pixels end here

    def next(self, deadline: Optional[float]) -> Optional[Frame]:
        self._release()
        subscriber, service = self._subscriber, self._service
        while True:
            # Looked at before receiving: a publisher that sends its last frame and leaves
            # between the two is not taken for an ended stream with a frame still queued.
            publishers = service.dynamic_config.number_of_publishers
            self._publisher_seen |= publishers > 0
            sample = subscriber.receive()
            if sample is not None:
                return self._frame(sample)
            if self._publisher_seen and publishers == 0:
                return None
            if deadline is None:
                wait = self._wait
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    who = (f"{publishers} publisher(s)" if publishers else
                           "no publisher" + (" (it has left)" if self._publisher_seen else " yet"))
                    raise Timeout(f"no frame on shm://{self._name} within the timeout ({who})")
                wait = iox2.Duration.from_secs_f64(min(left, LIVENESS_CHECK))
            if self._listener is not None:
                self._listener.timed_wait(wait)
            else:
                time.sleep(0.00025)

    def _frame(self, sample: Any) -> Frame:
        self._sample = sample
        header = FrameHeader.from_address(sample.user_header_ptr)
        index = header.frame_index
        width, height, code, stride = header.width, header.height, header.format, header.stride
        payload = sample.payload()
        length = payload.number_of_elements
        fmt = FORMATS.get(code)
        why = None
        if fmt is None:
            why = f"unknown format code {code}"
        elif width == 0 or height == 0:
            why = f"a frame of {width}x{height}"
        elif stride != width * fmt.bytes_per_pixel:
            why = f"stride {stride} is not width {width} x {fmt.bytes_per_pixel} ({fmt.name})"
        elif stride * height != length or length > MAX_BYTES:
            why = f"stride {stride} x height {height} is not the payload's {length} bytes"
        if why is not None:
            self._release()
            raise ProtocolError(f"shm://{self._name} frame {index}: bad header: {why}")
        assert fmt is not None
        memory = (ctypes.c_uint8 * length).from_address(payload.data_ptr)
        pixels = np.frombuffer(memory, fmt.dtype).reshape(height, width, fmt.channels)
        pixels.flags.writeable = False  # other subscribers read the same memory
        if not header.flags & 1:
            pixels = pixels[::-1]
        return Frame(
            pixels, index, header.timestamp_ns, fmt.name, "none", "shm", sample, header.request_id
        )
