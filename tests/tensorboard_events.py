"""TensorBoard event files read back for tests, with tensorboardX's protobufs (no TensorFlow needed)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path


def summary_values(run: Path) -> Iterator:
    """Every summary value in ``run``'s event files, oldest file first, in the order written."""
    from tensorboardX.proto.event_pb2 import Event

    for events in sorted(run.glob("events.out.tfevents.*")):
        data, offset = events.read_bytes(), 0
        while offset < len(data):  # TFRecord: length, crc, payload, crc
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 16 + length
            yield from event.summary.value
