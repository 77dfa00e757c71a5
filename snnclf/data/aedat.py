"""jAER's AEDAT 2.0 and AEDAT 3.1 files, as the authors of POKER-DVS, CIFAR10-DVS and DVS Gesture
publish their recordings, read into events (x, y, t in µs, p).

Written here because the libraries do not read them correctly: tonic 1.7's ``read_dvs_128`` and
``read_dvs_ibm`` unpack the three values of its own header reader into two names and fail on every
file, and its AEDAT 3 path takes every packet for polarity events and drops the timestamp overflow;
``aedat`` and ``dv-processing`` read AEDAT 4 only, ``loris`` AEDAT 3 only. Formats:
https://gitlab.com/inivation/docs (AEDAT file formats) and jAER's DVS128 address layout."""
import re

import numpy as np

from .events import EVENTS

HEADER_END = b"#!END-HEADER"
# AEDAT 3.1 packet header: eventType, eventSource, eventSize, eventTSOffset, eventTSOverflow,
# eventCapacity, eventNumber, eventValid (little-endian).
PACKET = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                   ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
POLARITY_EVENT = 1  # AEDAT 3.1 event type of DVS polarity events: uint32 data, int32 timestamp


def header(data):
    """(version, where the events start) of an AEDAT file's bytes: the ``#`` lines at its top,
    the first of which is ``#!AER-DATx.y``; AEDAT 3.1 ends them with ``#!END-HEADER``."""
    match = re.match(rb"#!AER-DAT(\d+\.\d+)\r?\n", data)
    if match is None:
        raise ValueError("no #!AER-DAT version line at the top: not an AEDAT file")
    version, start = match.group(1).decode(), match.end()
    while data.startswith(b"#", start):
        end = data.find(b"\n", start)
        if end < 0:
            raise ValueError("the header does not end")
        line, start = data[start:end], end + 1
        if line.startswith(HEADER_END):
            break
    return version, start


def _events(x, y, t, p):
    events = np.empty(len(t), EVENTS)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


def _unwrapped(t):
    """32-bit microsecond timestamps made monotonic across their wrap-around (every 71.6 minutes)."""
    t = t.astype(np.int64)
    return t + (np.cumsum(np.diff(t, prepend=t[:1]) < -2 ** 31) << 32)


def read_dvs128(path, transpose=False):
    """The polarity events of a jAER AEDAT 2.0 file from a DVS128: big-endian int32 address and
    int32 timestamp (µs) per event; the address holds the polarity in bit 0 (1: OFF), x in bits 1-7,
    y in bits 8-14, and bit 15 marks an external (special) event, which is dropped.
    ``transpose``: x and y swapped and mirrored (x = 127 - y, y = 127 - x), upright for the
    CIFAR10-DVS recordings, as SpikingJelly reads them."""
    data = open(path, "rb").read()
    version, start = header(data)
    if not version.startswith("2."):
        raise ValueError(f"AEDAT {version}, not 2.0")
    if (len(data) - start) % 8:
        raise ValueError("not a whole number of 8-byte events: cut short")
    raw = np.frombuffer(data, dtype=">u4", offset=start).reshape(-1, 2)
    address, t = raw[:, 0].astype(np.int64), _unwrapped(raw[:, 1])
    keep = (address & 0x8000) == 0
    address, t = address[keep], t[keep]
    x, y, p = (address >> 1) & 0x7F, (address >> 8) & 0x7F, 1 - (address & 1)
    return _events(127 - y, 127 - x, t, p) if transpose else _events(x, y, t, p)


def read_aedat31(path):
    """The valid polarity events of an AEDAT 3.1 file (DVS Gesture's): packets of a 28-byte header
    and ``capacity`` events of ``size`` bytes; a polarity event's uint32 holds validity (bit 0),
    polarity (bit 1), y (bits 2-16) and x (bits 17-31), and its timestamp is
    ``ts_overflow << 31 | timestamp``. Packets of other types (special events, frames, IMU) are
    skipped."""
    data = open(path, "rb").read()
    version, offset = header(data)
    if not version.startswith("3."):
        raise ValueError(f"AEDAT {version}, not 3.1")
    parts = []
    while offset < len(data):
        if offset + PACKET.itemsize > len(data):
            raise ValueError("a packet header is cut short")
        head = np.frombuffer(data, PACKET, 1, offset)[0]
        size, capacity = int(head["size"]), int(head["capacity"])
        body = offset + PACKET.itemsize
        if size < 1 or capacity < 0 or body + size * capacity > len(data):
            raise ValueError("a packet is cut short or its header is corrupt")
        if head["type"] == POLARITY_EVENT:
            if size != 8:
                raise ValueError(f"polarity events of {size} bytes, not 8")
            raw = np.frombuffer(data, "<u4", 2 * capacity, body).reshape(-1, 2).astype(np.int64)
            valid = (raw[:, 0] & 1) == 1
            word, t = raw[valid, 0], raw[valid, 1]
            parts.append(_events((word >> 17) & 0x7FFF, (word >> 2) & 0x7FFF,
                                 (int(head["ts_overflow"]) << 31) | t, (word >> 1) & 1))
        offset = body + size * capacity
    return np.concatenate(parts) if parts else np.empty(0, EVENTS)


def read_labels(path):
    """DVS Gesture's ``<user>_<lighting>_labels.csv``: rows ``class,startTime_usec,endTime_usec``
    after a header line, classes 1-11. Returns [(class index from 0, start µs, end µs)]."""
    rows = []
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines or not lines[0].lower().startswith("class"):
        raise ValueError("no 'class,startTime_usec,endTime_usec' header line")
    for line in lines[1:]:
        label, start, end = (int(v) for v in line.split(","))
        if not 1 <= label <= 11 or end <= start:
            raise ValueError(f"row {line!r}: a class 1-11 and an end after the start expected")
        rows.append((label - 1, start, end))
    return rows
