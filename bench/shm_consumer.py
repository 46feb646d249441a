"""The shared-memory consumer of the head-to-head: subscribes to `glstream --shm SERVICE`, views
every frame as a numpy array in place (no copy), and prints one line like consumer.py: frames,
and fps over the frames after the warm-up. It ends when glstream does.

    python shm_consumer.py SERVICE WARMUP
"""
import ctypes
import sys
import time

import iceoryx2 as iox2
import numpy as np


class FrameHeader(ctypes.Structure):
    _fields_ = [("frame_index", ctypes.c_uint64), ("timestamp_ns", ctypes.c_uint64),
                ("width", ctypes.c_uint32), ("height", ctypes.c_uint32),
                ("format", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("stride", ctypes.c_uint32), ("reserved", ctypes.c_uint32),
                ("request_id", ctypes.c_uint64)]

    @staticmethod
    def type_name():
        return "glstream::FrameHeader"


name, warmup = sys.argv[1], int(sys.argv[2])
iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
while True:
    try:
        service = (node.service_builder(iox2.ServiceName.new(name))
                   .publish_subscribe(iox2.Slice[ctypes.c_uint8]).user_header(FrameHeader).open())
        break
    except iox2.PublishSubscribeOpenError:
        time.sleep(0.01)
subscriber = service.subscriber_builder().create()
frames, started, seen_publisher = 0, None, False
while True:
    publishers = service.dynamic_config.number_of_publishers
    seen_publisher |= publishers > 0
    sample = subscriber.receive()
    if sample is None:
        if seen_publisher and publishers == 0:
            break
        node.wait(iox2.Duration.from_micros(100))
        continue
    header = sample.user_header().contents
    image = np.frombuffer(sample.payload().as_memory_view(), np.uint8).reshape(
        header.height, header.width, 4)
    frames += 1
    if frames == warmup:
        started = time.perf_counter()
    del image, header
    sample.delete()
elapsed = time.perf_counter() - started if started else 0.0
print("frames %d fps %.1f" % (frames, (frames - warmup) / elapsed if elapsed > 0 else 0.0),
      flush=True)
