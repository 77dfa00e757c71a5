"""Tiny event-camera data sets in the real file formats, for tests that run tonic's own readers.

Each ``write_<name>(path, x, y, p, t)`` writes one recording the way the downloaded data set holds
it (``t`` is always in microseconds, ``p`` is 0/1), so that the tonic 1.7 class of that data set
reads it back unchanged, without any download:

=============  ==================================================  ===============================
data set       layout under ``root`` (the ``--data_dir``)           file format
=============  ==================================================  ===============================
CIFAR10-DVS    ``CIFAR10DVS/<class>/<n>.aedat4``                    AEDAT 4.0 (``aedat`` decoder)
DVS Gesture    ``DVSGesture/ibmGesture{Train,Test}/userNN_<light>/  .npy float64 [N, 4]: x, y, p,
               <label>.npy``                                        t in milliseconds
N-Caltech101   ``NCALTECH101/Caltech101/<category>/image_NNNN.bin`` 40-bit ATIS events
POKER-DVS      ``POKERDVS/pips_{train,test}/<cl|he|di|sp>/<n>.npy`` .npy int64 [N, 4]: t, x, y, p
ASL-DVS        ``ASLDVS/<letter>/<letter>_NNNN.mat``                MATLAB v5: ts, x, y, pol [N, 1]
=============  ==================================================  ===============================

``make_dataset(name, root)`` writes a small learnable data set of one of them (each class is a
blob of events at its own place on the sensor), ``corrupt_file(name, root)`` spoils one recording
the way a cut-short download would.
"""
import struct
from pathlib import Path

import numpy as np
import scipy.io

# --- CIFAR10-DVS: AEDAT 4.0 ---------------------------------------------------------------------
# The file is the magic line, a uint32 size, an IOHeader flatbuffer (compression, data table
# position, and an XML description of the streams), then packets: int32 stream id, uint32 size,
# and a *size-prefixed* flatbuffer (EventPacket "EVTS" of 16-byte Event structs, IMUPacket "IMUS"
# of IMU tables), LZ4-frame compressed as the cameras record them. The flatbuffers are
# laid out by hand; the aedat decoder verifies the packets.

AEDAT4_EVENT = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"],
                         "offsets": [0, 8, 10, 12], "itemsize": 16})  # struct Event, 8-aligned
AEDAT4_COMPRESSION = {0: "NONE", 1: "LZ4", 2: "LZ4_HIGH", 3: "ZSTD", 4: "ZSTD_HIGH"}
AEDAT4_STREAM = (
    '<node name="{id}" path="/mainloop/Recorder/outInfo/{id}/">'
    '<attr key="compression" type="string">LZ4</attr>'
    '<attr key="originalOutputName" type="string">{name}</attr>'
    '<attr key="typeIdentifier" type="string">{identifier}</attr>'
    '<node name="info" path="/mainloop/Recorder/outInfo/{id}/info/">{info}'
    '<attr key="source" type="string">DVS128</attr></node></node>')
AEDAT4_XML = '<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">{streams}</node></dv>'


def _aedat4_header(description, compression=1):
    """uint32 size + IOHeader table {compression: int32 (1: LZ4), dataTablePosition: int64 = -1
    (no table: read to the end), infoNode: string}."""
    text = description.encode()
    fb = struct.pack("<I4s", 24, b"IOHE")                # root table at 24; file identifier
    fb += struct.pack("<5H6x", 10, 24, 4, 16, 8)         # vtable at 8: field offsets in the table
    fb += struct.pack("<iiI4xq", 16, compression, 16, -1)  # table at 24: vtable, compression, ->string, -1
    fb += struct.pack("<I", len(text)) + text + b"\0"    # string at 48
    fb += b"\0" * (-len(fb) % 4)
    return struct.pack("<I", len(fb)) + fb


def _aedat4_packet(elements, identifier, stream_id):
    """One packet of a stream: its id, its size, and a size-prefixed flatbuffer of one vector
    (``elements``: the bytes after its length), LZ4-frame compressed."""
    import lz4.frame

    count = len(elements) if isinstance(elements, np.ndarray) else elements[0]
    body = elements.tobytes() if isinstance(elements, np.ndarray) else elements[1]
    fb = struct.pack("<I4s", 16, identifier)             # root table at 4 + 16 = 20; identifier
    fb += struct.pack("<3H2x", 6, 8, 4)                  # vtable at 12: one field, at 4 in the table
    fb += struct.pack("<iII", 8, 4, count)               # table at 20: vtable, ->vector; vector length
    fb += body                                           # elements at 32 (8-aligned)
    data = lz4.frame.compress(struct.pack("<I", len(fb)) + fb)
    return struct.pack("<iI", stream_id, len(data)) + data


def _imu_tables(timestamps):
    """An IMUPacket's vector: IMU is a *table* (its vector holds offsets), here with its first
    field, the int64 timestamp, alone (the others take their defaults): (count, bytes from the
    vector's first offset, which lies at 32 in the size-prefixed buffer)."""
    n = len(timestamps)
    vtable = 32 + 4 * n                                  # one vtable for every IMU table
    first = vtable + 6 + (-(vtable + 6) % 8)             # tables 8-aligned, 16 bytes each
    tables = [first + 16 * i for i in range(n)]
    out = b"".join(struct.pack("<I", at - (32 + 4 * i)) for i, at in enumerate(tables))
    out += struct.pack("<3H", 6, 16, 8) + b"\0" * (first - vtable - 6)
    out += b"".join(struct.pack("<i4xq", at - vtable, int(t)) for at, t in zip(tables, timestamps))
    return n, out


def write_cifar10dvs(path, x, y, p, t, width=128, height=128, events_per_packet=1000):
    """One CIFAR10-DVS recording as tonic's copy (and the cameras) write AEDAT 4.0: LZ4-compressed
    packets of two streams, events (fields t, x, y, on, as ``tonic.io.read_aedat4`` reads them) and
    IMU samples between them, which a reader must leave out. ``t``: any int64 microseconds (the
    real files count from the epoch). Packets hold ``events_per_packet`` events; none is empty."""
    events = np.zeros(len(t), AEDAT4_EVENT)
    events["t"], events["x"], events["y"], events["on"] = t, x, y, p
    size = f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
    streams = (AEDAT4_STREAM.format(id=0, name="events", identifier="EVTS", info=size)
               + AEDAT4_STREAM.format(id=1, name="imu", identifier="IMUS", info=""))
    with _create(path) as f:
        f.write(b"#!AER-DAT4.0\r\n")
        f.write(_aedat4_header(AEDAT4_XML.format(streams=streams)))
        for start in range(0, len(events), events_per_packet):
            chunk = events[start:start + events_per_packet]
            f.write(_aedat4_packet(chunk, b"EVTS", 0))
            f.write(_aedat4_packet(_imu_tables(chunk["t"][[0, -1]]), b"IMUS", 1))  # two IMU samples


def aedat4_facts(path):
    """An AEDAT 4 file's compression (the IOHeader's) and the type identifiers of its streams."""
    data = Path(path).read_bytes()
    start = data.index(b"\n") + 1
    size = struct.unpack_from("<I", data, start)[0]
    table = start + 4 + struct.unpack_from("<I", data, start + 4)[0]
    vtable = table - struct.unpack_from("<i", data, table)[0]
    where = struct.unpack_from("<H", data, vtable + 4)[0]  # the first field: compression
    xml = data[start + 4:start + 4 + size].decode("latin-1")
    import re
    return {"compression": AEDAT4_COMPRESSION[struct.unpack_from("<i", data, table + where)[0] if where else 0],
            "streams": re.findall(r'key="typeIdentifier" type="string">(\w+)<', xml)}


def random_events(n, width, height, t0=0, seed=1):
    """``n`` events anywhere on a sensor, sorted in time over 300 ms from ``t0``: (x, y, p, t)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n),
            t0 + np.sort(rng.integers(0, 300_000, n)))


# --- DVS Gesture, POKER-DVS, ASL-DVS: numpy and MATLAB arrays ---------------------------------

def write_dvsgesture(path, x, y, p, t):
    """One DVS Gesture recording as tonic's preprocessed files hold it: float64 [N, 4] columns x,
    y, p, t in milliseconds. tonic multiplies t by 1000 in float and truncates to int64, which
    loses 1 us on ~1% of plain ``t / 1000`` values, so those are nudged up by one ulp: tonic then
    gives back ``t`` exactly."""
    t = np.asarray(t, dtype=np.int64)
    ms = t / 1000.0
    low = ms * 1000.0 < t
    ms[low] = np.nextafter(ms[low], np.inf)
    _save_npy(path, np.column_stack([x, y, p, ms]).astype(np.float64))


def write_pokerdvs(path, x, y, p, t):
    """One POKER-DVS recording as tonic ships it: uint64 [N, 4] columns t, x, y, p (tonic's field
    order), t in microseconds from 0 (the first event's time)."""
    t = np.asarray(t, dtype=np.int64)
    _save_npy(path, np.column_stack([t - (t.min() if len(t) else 0), x, y, p]).astype(np.uint64))


# --- jAER AEDAT 2.0 (POKER-DVS's and CIFAR10-DVS's original releases) and AEDAT 3.1 (DVS Gesture) -

AEDAT2_HEADER = ("#!AER-DAT2.0", "# This is a raw AE data file - do not edit",
                 "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event",
                 "# Timestamps tick is 1 us", "# created Tue Apr 29 11:36:59 CEST 2008")  # as jAER writes it


def dvs128_address(x, y, p):
    """jAER's DVS128 address: polarity in bit 0 (1: OFF), x in bits 1-7, y in bits 8-14."""
    x, y, p = (np.asarray(a, dtype=np.int64) for a in (x, y, p))
    return (y << 8) | (x << 1) | (1 - p)


def write_aedat2(path, address, t, header=AEDAT2_HEADER):
    """A jAER AEDAT 2.0 file: ``#`` header lines ending in CR LF, then a big-endian int32 address
    and int32 timestamp (µs) per event."""
    raw = np.column_stack([address, np.asarray(t, dtype=np.int64) & 0xFFFFFFFF]).astype(">u4")
    with _create(path) as f:
        f.write("".join(line + "\r\n" for line in header).encode())
        f.write(raw.tobytes())


def write_pokerdvs_original(path, x, y, p, t):
    """One original POKER-DVS recording (IMSE-CNM's x<suit>NN.aedat): AEDAT 2.0, DVS128 addresses,
    timestamps as recorded (they do not start at 0)."""
    write_aedat2(path, dvs128_address(x, y, p), t)


def write_cifar10dvs_original(path, x, y, p, t):
    """One recording of CIFAR10-DVS's original release: AEDAT 2.0 from a DVS128, whose picture is
    turned (snnclf reads x = 127 - address y, y = 127 - address x, as SpikingJelly does)."""
    write_aedat2(path, dvs128_address(127 - np.asarray(y), 127 - np.asarray(x), p), t)


AEDAT31_HEADER = ("#!AER-DAT3.1", "#Format: RAW", "#Source 1: DVS128", "#Start-Time: 2017-03-22 12:31:17 (TZ+0100)",
                  "#!END-HEADER")  # DVS Gesture's


def _aedat31_packet(kind, words, overflow=0, size=8):
    """A packet: its 28-byte header (type, source 1, event size, timestamp offset 4, overflow,
    capacity, number, valid) and ``words`` [N, 2] uint32 (data, timestamp)."""
    words = np.asarray(words, dtype="<u4").reshape(-1, 2)
    valid = int((words[:, 0] & 1).sum()) if kind == 1 else len(words)
    return struct.pack("<hhiiiiii", kind, 1, size, 4, overflow, len(words), len(words), valid) + words.tobytes()


def write_aedat31(path, x, y, p, t, invalid=0, events_per_packet=1000, seed=0):
    """A DVS Gesture recording (IBM's userNN_<lighting>.aedat): AEDAT 3.1, a special-event packet
    (a timestamp reset), then polarity packets of at most ``events_per_packet`` events, a new one
    wherever the timestamp's bit 31 (the packet's overflow) changes. ``invalid`` more events with
    the validity bit clear are mixed in; a reader must drop them."""
    x, y, p, t = (np.asarray(a, dtype=np.int64) for a in (x, y, p, t))
    data = (x << 17) | (y << 2) | (p << 1) | 1
    rng = np.random.default_rng(seed)
    if invalid:
        at = np.sort(rng.integers(0, len(t) + 1, invalid))
        data = np.insert(data, at, rng.integers(0, 2 ** 31, invalid) << 1)  # bit 0 clear
        t = np.insert(t, at, t[np.minimum(at, len(t) - 1)])
    with _create(path) as f:
        f.write("".join(line + "\r\n" for line in AEDAT31_HEADER).encode())
        f.write(_aedat31_packet(0, [[(1 << 1) | 1, int(t[0]) & 0x7FFFFFFF]]))  # special: timestamp reset
        start = 0
        while start < len(t):
            overflow = int(t[start]) >> 31
            end = min(start + events_per_packet, len(t), start + int(np.searchsorted(t[start:] >> 31, overflow + 1)))
            f.write(_aedat31_packet(1, np.column_stack([data[start:end], t[start:end] & 0x7FFFFFFF]), overflow))
            start = end


def write_gesture_labels(path, clips):
    """DVS Gesture's userNN_<lighting>_labels.csv: [(class 1-11, start µs, end µs)]."""
    with _create(path) as f:
        f.write(("class,startTime_usec,endTime_usec\r\n"
                 + "".join(f"{k},{start},{end}\r\n" for k, start, end in clips)).encode())


def write_asldvs(path, x, y, p, t):
    """One ASL-DVS recording: a MATLAB v5 file of column vectors [N, 1] ts (uint32 us), x, y, pol
    (uint8; y counted from the bottom: tonic flips it with ``179 - y``). The MATLAB classes are a
    guess; tonic converts them all to int."""
    column = lambda a, dtype: np.asarray(a, dtype=dtype).reshape(-1, 1)
    with _create(path) as f:
        scipy.io.savemat(f, {"ts": column(t, np.uint32), "x": column(x, np.uint8),
                             "y": column(y, np.uint8), "pol": column(p, np.uint8)})


# --- N-Caltech101: 40-bit ATIS events -----------------------------------------------------------

def write_ncaltech101(path, x, y, p, t):
    """One N-Caltech101 recording: 5 bytes an event, x, y, then polarity (bit 7) and a 23-bit
    microsecond timestamp, big-endian, as ``tonic.io.read_mnist_file`` reads it. A y of 240 marks
    a timestamp-overflow event there, so recordings stay below y 240 and t 2**23 (8.4 s)."""
    x, y, p, t = (np.asarray(a, dtype=np.int64) for a in (x, y, p, t))
    if (x.min(initial=0) < 0 or x.max(initial=0) > 255 or y.min(initial=0) < 0
            or y.max(initial=0) >= 240 or t.min(initial=0) < 0 or t.max(initial=0) >= 2 ** 23):
        raise ValueError("N-Caltech101 events need 0 <= x < 256, 0 <= y < 240, 0 <= t < 2**23")
    raw = np.empty((len(t), 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | (t >> 16)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    with _create(path) as f:
        f.write(raw.tobytes())


def _create(path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb")


def _save_npy(path, array):
    with _create(path) as f:
        np.save(f, array)


# --- tiny learnable data sets -------------------------------------------------------------------

TONIC = ("cifar10dvs", "dvsgesture", "ncaltech101", "pokerdvs", "asldvs")  # the layouts tonic's classes read
WRITERS = {"cifar10dvs": write_cifar10dvs, "dvsgesture": write_dvsgesture,
           "ncaltech101": write_ncaltech101, "pokerdvs": write_pokerdvs, "asldvs": write_asldvs,
           "pokerdvs-original": write_pokerdvs_original, "cifar10dvs-original": write_cifar10dvs_original,
           "dvsgesture-ibm": write_aedat31}
FOLDERS = {"cifar10dvs": "CIFAR10DVS", "dvsgesture": "DVSGesture", "ncaltech101": "NCALTECH101",
           "pokerdvs": "POKERDVS", "asldvs": "ASLDVS", "pokerdvs-original": "", "cifar10dvs-original": "CIFAR10DVS",
           "dvsgesture-ibm": "DvsGesture"}
SENSORS = {"cifar10dvs": (128, 128), "dvsgesture": (128, 128), "ncaltech101": (240, 180),
           "pokerdvs": (35, 35), "asldvs": (240, 180)}  # (width, height)
CLASSES = {"cifar10dvs": ("airplane", "automobile", "bird"), "dvsgesture": (0, 1, 2, 3),
           "ncaltech101": ("Faces_easy", "accordion", "airplanes"),
           "pokerdvs": ("cl", "he", "di", "sp"), "asldvs": ("a", "b", "c")}
LIGHTS = ("fluorescent", "led", "fluorescent_led", "natural", "lab")
SUFFIX = {"cifar10dvs": ".aedat4", "dvsgesture": ".npy", "ncaltech101": ".bin",
          "pokerdvs": ".npy", "asldvs": ".mat", "pokerdvs-original": ".aedat", "cifar10dvs-original": ".aedat",
          "dvsgesture-ibm": ".aedat"}
# (events, duration in ms) of a recording; POKER-DVS's are those of the 48 real recordings (its README in
# shared/data/real-events: 870-5,387 events over 4.66-29.8 ms); the others' are only small.
SIZES = {"pokerdvs": ((870, 5387), (4.66, 29.8))}
SUITS = {"cl": "club", "di": "diamond", "he": "heart", "sp": "spade"}


def _key(name, layout=None):
    """'CIFAR10-DVS', 'cifar10dvs', 'N-Caltech101', 'NCALTECH101', ... and a layout ("original",
    "ibm"; None: tonic's copy) -> the key used here."""
    key = name.lower().replace("-", "").replace("_", "")
    key = {"caltech101": "ncaltech101", "dvsgestures": "dvsgesture", "ibmgesture": "dvsgesture",
           "poker": "pokerdvs", "asl": "asldvs", "cifar10": "cifar10dvs"}.get(key, key)
    key = f"{key}-{layout}" if layout else key
    if key not in WRITERS:
        raise ValueError(f"unknown event data set {name!r} (layout {layout}): one of {', '.join(WRITERS)}")
    return key


def layout_of(entry):
    """The layout argument of :func:`make_dataset` that writes the files of snnclf's EventSet ``entry``."""
    return None if entry.layout_name.startswith("tonic") else "ibm" if entry.clips else "original"


def _base(key):
    return key.split("-")[0]


def _recording(rng, k, n_classes, width, height, t0, sizes=((200, 800), (100, 300))):
    """Events of class ``k``: ~85% a Gaussian blob whose centre sits on a circle at angle
    2*pi*k/n_classes (jittered), the rest uniform noise; ``sizes``: (events, duration in ms) ranges,
    by default 200-800 events over 100-300 ms."""
    (low, high), (short, long) = sizes
    n = int(rng.integers(low, high + 1))
    side = min(width, height)
    angle = 2 * np.pi * k / n_classes
    cx = width / 2 + 0.3 * side * np.cos(angle) + rng.normal(0, 0.03 * side)
    cy = height / 2 + 0.3 * side * np.sin(angle) + rng.normal(0, 0.03 * side)
    blob = rng.random(n) < 0.85
    sigma = max(1.0, 0.07 * side)
    x = np.where(blob, rng.normal(cx, sigma, n), rng.uniform(0, width, n))
    y = np.where(blob, rng.normal(cy, sigma, n), rng.uniform(0, height, n))
    x = np.clip(np.round(x), 0, width - 1).astype(np.int64)
    y = np.clip(np.round(y), 0, height - 1).astype(np.int64)
    span = int(rng.uniform(short, long) * 1000)
    t = t0 + np.sort(rng.integers(0, span, n))
    t[0], t[-1] = t0, t0 + span - 1  # the recording runs from its first event to its last
    return x, y, rng.integers(0, 2, n), t


def _files(key, classes, samples_per_class):
    """(split, class index, relative path) of every recording of the data set's real layout."""
    spc, n_test = samples_per_class, max(2, samples_per_class // 2)
    for k, c in enumerate(classes):
        if key == "cifar10dvs":
            yield from (("all", k, f"{c}/{i}.aedat4") for i in range(spc))
        elif key == "cifar10dvs-original":
            yield from (("all", k, f"{c}/cifar10_{c}_{i}.aedat") for i in range(spc))
        elif key == "pokerdvs-original":  # the "i" recordings are of the same cards
            yield from (("all", k, f"x{SUITS[c]}{i + 1:02d}{'i' if i % 3 == 2 else ''}.aedat") for i in range(spc))
        elif key == "ncaltech101":
            yield from (("all", k, f"Caltech101/{c}/image_{i + 1:04d}.bin") for i in range(spc))
        elif key == "asldvs":
            yield from (("all", k, f"{c}/{c}_{i + 1:04d}.mat") for i in range(spc))
        elif key == "pokerdvs":
            for split, n in (("train", spc), ("test", n_test)):
                yield from ((split, k, f"pips_{split}/{c}/{i}.npy") for i in range(n))
        else:  # DVS Gesture: one file per label in each user/lighting folder, two users a split
            for split, user, light in _gesture_trials(samples_per_class):
                yield split, k, f"ibmGesture{split.title()}/user{user:02d}_{light}/{c}.npy"


def _gesture_trials(samples_per_class):
    """(split, user, lighting) of DVS Gesture's recordings: users 1 and 2 train, 24 and 25 test."""
    for split, n, first, shift in (("train", samples_per_class, 1, 0), ("test", max(2, samples_per_class // 2), 24, 1)):
        for i in range(n):
            yield split, first + i % 2 + 2 * (i // 10), LIGHTS[(i + shift) % len(LIGHTS)]


def _ibm_recording(rng, classes, path, t0):
    """One IBM DVS Gesture file: each class's gesture once, in a random order, as a clip of its own
    window, with stray events between the clips (outside every window), and its labels csv."""
    xs, ys, ps, ts, clips = [], [], [], [], []
    start = t0
    for k in rng.permutation(len(classes)):
        x, y, p, t = _recording(rng, int(k), len(classes), 128, 128, start)
        gap = rng.integers(0, 128, (2, 30))
        xs += [x, gap[0]]
        ys += [y, gap[1]]
        ps += [p, rng.integers(0, 2, 30)]
        end = int(t[-1]) + 1
        ts += [t, np.sort(rng.integers(end, end + 100_000, 30))]
        clips.append((int(classes[k]) + 1, start, end))
        start = end + 100_000
    write_aedat31(path, *(np.concatenate(a) for a in (xs, ys, ps, ts)), invalid=25)
    write_gesture_labels(path.with_name(path.stem + "_labels.csv"), clips)


def make_dataset(name, root, samples_per_class=5, classes=None, seed=0, layout=None):
    """Write a tiny learnable data set ``name`` under ``root/<its folder>`` and return ``{split:
    [paths]}`` (split "all" for the sets without an official split, else "train" and "test"),
    a path for each sample (an IBM DVS Gesture file once for each gesture it holds).

    ``layout``: None for tonic's copy, "original" for POKER-DVS's and CIFAR10-DVS's original
    AEDAT 2.0 releases, "ibm" for DVS Gesture's AEDAT 3.1 release (userNN_<lighting>.aedat holding
    every class's gesture, cut by its _labels.csv; the first one's clock passes 2**31 µs).
    ``samples_per_class`` recordings a class (in the training split where there is one, and half
    as many, at least 2, in the test split). For DVS Gesture it is the number of user/lighting
    folders (files) of the training split (users 01 and 02; the test split has users 24 and 25),
    each holding one ``<label>.npy`` a class. The default of 5 is the least that lets a stratified
    80/20 split hold out one recording of every class. ``classes``: class names (DVS Gesture:
    integer labels 0-10) instead of the small default list. N-Caltech101 recordings get a random
    size up to 240x180 (tonic moves each to the origin); CIFAR10-DVS timestamps are absolute."""
    key = _key(name, layout)
    classes = tuple(CLASSES[_base(key)] if classes is None else classes)
    rng = np.random.default_rng([seed, list(WRITERS).index(key)])  # data sets differ
    width, height = SENSORS[_base(key)]
    base = Path(root) / FOLDERS[key]
    written = {}
    if key == "dvsgesture-ibm":
        for i, (split, user, light) in enumerate(_gesture_trials(samples_per_class)):
            path = base / f"user{user:02d}_{light}.aedat"
            _ibm_recording(rng, classes, path, 2 ** 31 - 400_000 if i == 0 else int(rng.integers(0, 10 ** 9)))
            written.setdefault(split, []).extend([path] * len(classes))
        return written
    for split, k, rel in _files(key, classes, samples_per_class):
        if key == "ncaltech101":
            width, height = int(rng.integers(160, 241)), int(rng.integers(120, 181))
        t0 = {"cifar10dvs": 1_600_000_000_000_000 + int(rng.integers(0, 10 ** 12)),
              "ncaltech101": int(rng.integers(0, 1000))}.get(key, int(rng.integers(0, 5_000_000)))
        x, y, p, t = _recording(rng, k, len(classes), width, height, t0, **(
            {"sizes": SIZES[_base(key)]} if _base(key) in SIZES else {}))
        WRITERS[key](base / rel, x, y, p, t)
        written.setdefault(split, []).append(base / rel)
    return written


def corrupt_file(name, root, layout=None):
    """Cut short the first recording (in sorted order) of data set ``name`` under ``root``, as an
    interrupted download leaves it, and return its path: a .bin loses its last 3 bytes (no longer
    whole 5-byte events), an .aedat4 is cut inside its last packet (cut at a packet boundary, the
    aedat decoder would quietly read fewer events), an AEDAT 2.0 or 3.1 file loses its last 3
    bytes, a .npy or .mat keeps its first half. The reader then raises (tonic's: RuntimeError,
    IndexError, ValueError, OSError respectively; snnclf's AEDAT readers: ValueError)."""
    key = _key(name, layout)
    path = sorted((Path(root) / FOLDERS[key]).rglob("*" + SUFFIX[key]))[0]
    data = path.read_bytes()
    if key == "ncaltech101" or key.endswith(("-original", "-ibm")):
        data = data[:-3]
    elif key == "cifar10dvs":
        data = data[:-24]  # inside the last event struct of the last packet
    else:
        data = data[:len(data) // 2]
    path.write_bytes(data)
    return path
