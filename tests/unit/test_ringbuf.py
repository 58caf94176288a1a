"""RingBufferReader (runtime/ringbuf.py) against a fake BPF ring buffer in a memfd.

The fake is laid out as the kernel maps a ring buffer to user space (kernel/bpf/ringbuf.c):
page 0 ``consumer_pos``, page 1 ``producer_pos``, then the data area.  The kernel maps the
data pages twice in a row so that a record that wraps around the end is contiguous; a
memfd cannot alias its own pages, so :class:`FakeRing` writes every byte of the data area
at both places (``2*PAGE + off`` and ``2*PAGE + size + off``), and the reader's mapping
of ``PAGE + 2*size`` bytes at offset ``PAGE`` sees the same bytes the kernel's would.

Records are produced as the kernel does (``__bpf_ringbuf_reserve`` / ``bpf_ringbuf_commit``):
an 8-byte header ``u32 len | BUSY``, ``u32 pg_off`` is written, then ``producer_pos`` moves
by ``round_up(len + 8, 8)``; committing clears BUSY and, for a discard, sets DISCARD.
Positions are free-running 64-bit counters (the kernel never wraps them), so the tests
start them at arbitrary large values.  No root and no BPF: only shared memory.
"""
from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ebpftoolkit.errors import ProbeConfigError
from ebpftoolkit.runtime.ringbuf import RingBufferReader

PAGE = mmap.PAGESIZE
BUSY, DISCARD = 1 << 31, 1 << 30
U64 = struct.Struct("<Q")
HDR = struct.Struct("<II")

# A record whose size is not a multiple of 8 (17 bytes: records are padded to 24 + 8 header = 32)
# and whose fields are unaligned, so that decoding at a wrong offset shows.
DTYPE = np.dtype([("ts", "<u8"), ("pid", "<u4"), ("name", "S5")])
assert DTYPE.itemsize == 17


def padded(length: int) -> int:
    return (length + 8 + 7) & ~7


STRIDE = padded(DTYPE.itemsize)


class FakeRing:
    """A BPF ring buffer's user-visible memory in a memfd, with a producer that behaves like the kernel's."""

    def __init__(self, size: int, start: int = 0):
        self.size = size
        self.name = f"ebt-fake-ring-{uuid.uuid4().hex}"
        self.fd = os.memfd_create(self.name)
        os.ftruncate(self.fd, 2 * PAGE + 2 * size)
        self.mem = mmap.mmap(self.fd, 2 * PAGE + 2 * size)
        U64.pack_into(self.mem, 0, start)          # consumer_pos
        U64.pack_into(self.mem, PAGE, start)       # producer_pos
        self.written: list[tuple[int, int, bytes]] = []   # (position, header len word, payload)

    # positions
    @property
    def consumer(self) -> int:
        return U64.unpack_from(self.mem, 0)[0]

    @property
    def producer(self) -> int:
        return U64.unpack_from(self.mem, PAGE)[0]

    def free(self) -> int:
        return self.size - (self.producer - self.consumer)

    # the data area, written at both of its mappings
    def _write(self, pos: int, data: bytes) -> None:
        off = pos & (self.size - 1)
        first = data[: self.size - off]
        rest = data[len(first):]
        for base in (2 * PAGE, 2 * PAGE + self.size):
            self.mem[base + off: base + off + len(first)] = first
            if rest:
                self.mem[base: base + len(rest)] = rest

    def _read(self, pos: int, n: int) -> bytes:
        off = pos & (self.size - 1)
        return bytes(self.mem[2 * PAGE + off: 2 * PAGE + off + n])   # the second mapping makes it contiguous

    def reserve(self, length: int) -> int:
        """Reserve a record of ``length`` bytes (header written BUSY), as bpf_ringbuf_reserve does."""
        need = padded(length)
        if need > self.free():
            raise AssertionError(f"fake ring full: {need} bytes asked, {self.free()} free")
        pos = self.producer
        pg_off = (2 * PAGE + (pos & (self.size - 1))) // PAGE
        self._write(pos, HDR.pack(length | BUSY, pg_off))
        self._write(pos + 8, b"\xee" * (need - 8))          # stale bytes where the payload goes
        U64.pack_into(self.mem, PAGE, pos + need)
        return pos

    def fill(self, pos: int, payload: bytes) -> None:
        self._write(pos + 8, payload)

    def commit(self, pos: int, discard: bool = False) -> None:
        length, pg_off = HDR.unpack(self._read(pos, 8))
        assert length & BUSY
        length &= ~BUSY
        if discard:
            length |= DISCARD
        self._write(pos, HDR.pack(length, pg_off))

    def put(self, payload: bytes, discard: bool = False, busy: bool = False) -> int:
        pos = self.reserve(len(payload))
        self.fill(pos, payload)
        if not busy:
            self.commit(pos, discard)
        return pos

    def close(self) -> None:
        self.mem.close()
        os.close(self.fd)


def record(i: int, name: bytes = b"") -> bytes:
    """One DTYPE record's bytes with recognisable contents."""
    arr = np.zeros(1, DTYPE)
    arr["ts"], arr["pid"], arr["name"] = 0x1122334455667788 + i, 1000 + i, name or b"r%03d" % i
    return arr.tobytes()


def as_records(payloads: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(payloads), DTYPE) if payloads else np.empty(0, DTYPE)


@pytest.fixture
def ring():
    rings = []

    def make(size=PAGE, start=0):
        r = FakeRing(size, start)
        rings.append(r)
        return r, RingBufferReader(r.fd, size, DTYPE)

    yield make
    for r in rings:
        r.close()


def assert_records(got: np.ndarray, payloads: list[bytes]) -> None:
    assert got.dtype == DTYPE
    assert got.tobytes() == b"".join(payloads), (got, as_records(payloads))


# -- committed records ------------------------------------------------------
def test_committed_records_come_back_in_order_as_a_structured_array(ring):
    r, reader = ring(start=12345 * 8)
    payloads = [record(i) for i in range(10)]
    for p in payloads:
        r.put(p)
    assert reader.pending_bytes() == 10 * STRIDE
    got = reader.drain()
    assert_records(got, payloads)
    assert list(got["pid"]) == [1000 + i for i in range(10)]
    assert got["name"][3] == b"r003" and got["ts"][9] == 0x1122334455667788 + 9
    assert reader.pending_bytes() == 0
    assert r.consumer == 12345 * 8 + 10 * STRIDE
    assert reader.malformed == 0 and reader.discarded == 0


def test_drain_returns_a_copy_not_a_view_of_the_ring(ring):
    r, reader = ring()
    r.put(record(1))
    got = reader.drain()
    r._write(0 + 8, record(99))   # the producer reuses the freed slot
    assert got["pid"][0] == 1001 and got["name"][0] == b"r001"


def test_empty_ring_gives_an_empty_array_of_the_dtype(ring):
    r, reader = ring(start=2**40)
    got = reader.drain()
    assert got.dtype == DTYPE and len(got) == 0
    assert r.consumer == 2**40


# -- busy records ------------------------------------------------------------
def test_reading_stops_at_a_busy_record_and_resumes_after_commit(ring):
    r, reader = ring(start=800)
    a, b, c = record(1), record(2), record(3)
    r.put(a)
    pos_b = r.put(b, busy=True)
    r.put(c)
    assert_records(reader.drain(), [a])
    assert r.consumer == 800 + STRIDE == pos_b           # not past the busy record
    assert len(reader.drain()) == 0 and r.consumer == pos_b   # still busy: nothing, nothing consumed
    r.commit(pos_b)
    assert_records(reader.drain(), [b, c])
    assert r.consumer == r.producer == 800 + 3 * STRIDE


def test_busy_record_first_returns_nothing(ring):
    r, reader = ring()
    pos = r.put(record(7), busy=True)
    r.put(record(8))
    assert len(reader.drain()) == 0
    assert r.consumer == pos
    r.commit(pos)
    assert_records(reader.drain(), [record(7), record(8)])


def test_busy_record_of_another_length_is_not_skipped_while_busy(ring):
    r, reader = ring()
    pos = r.put(b"x" * 40, busy=True)      # longer than ours, still being written
    r.put(record(1))
    assert len(reader.drain()) == 0
    assert r.consumer == pos and reader.malformed == 0
    r.commit(pos)
    assert_records(reader.drain(), [record(1)])
    assert reader.malformed == 1


# -- discarded and malformed records ------------------------------------------
def test_discarded_records_are_skipped_and_counted(ring):
    r, reader = ring()
    keep = []
    for i in range(8):
        p = record(i)
        r.put(p, discard=i % 3 == 0)
        if i % 3:
            keep.append(p)
    assert_records(reader.drain(), keep)
    assert reader.discarded == 3 and reader.malformed == 0
    assert r.consumer == r.producer == 8 * STRIDE


@pytest.mark.parametrize("length", [0, 1, 8, 16, 17 + 8, 40, 200])
def test_records_of_another_length_are_skipped_without_misdecoding_the_next(ring, length):
    """A record of another length moves the records after it off our stride: they must still decode."""
    r, reader = ring(start=5 * 8)
    a, b, c = record(1), record(2), record(3)
    r.put(a)
    r.put(bytes(range(256))[:length] if length else b"")
    r.put(b)
    r.put(c)
    got = reader.drain()
    assert_records(got, [a, b, c])
    assert reader.malformed == 1
    assert r.consumer == r.producer == 5 * 8 + 3 * STRIDE + padded(length)


def test_several_malformed_in_a_row_and_at_the_start(ring):
    r, reader = ring()
    good = [record(i) for i in range(3)]
    for length in (3, 60, 4):
        r.put(b"m" * length)
    r.put(good[0])
    r.put(b"n" * 9)
    r.put(good[1])
    r.put(good[2])
    assert_records(reader.drain(), good)
    assert reader.malformed == 4 and reader.discarded == 0
    assert reader.pending_bytes() == 0


# -- wrapping ------------------------------------------------------------------
@pytest.mark.parametrize("head", [8, 16, 24])
def test_record_wrapping_around_the_end_is_read_whole(ring, head):
    """The record's header sits ``head`` bytes before the end of the data area: its payload wraps."""
    size = PAGE
    start = 7 * size + size - head          # positions keep counting past the size
    r, reader = ring(size, start)
    payloads = [record(i, b"wrap%d" % i) for i in range(4)]
    for p in payloads:
        r.put(p)
    # the fake's first mapping really is split: the bytes at the start of the area are the tail of record 0
    assert bytes(r.mem[2 * PAGE: 2 * PAGE + 8]) != b"\0" * 8
    got = reader.drain()
    assert_records(got, payloads)
    assert got["name"][0] == b"wrap0"
    assert r.consumer == start + 4 * STRIDE


def test_ring_filled_to_capacity_across_the_end_many_times(ring):
    size = PAGE
    r, reader = ring(size, start=3 * 8)
    n_fit = size // STRIDE
    i = 0
    for rnd in range(5):
        batch = [record(i + k) for k in range(n_fit)]
        i += n_fit
        for p in batch:
            r.put(p)
        assert r.free() < STRIDE
        assert_records(reader.drain(), batch)
        assert r.consumer == 3 * 8 + (rnd + 1) * n_fit * STRIDE


# -- max_records -------------------------------------------------------------------
def test_max_records_limits_one_drain_and_the_rest_stays(ring):
    r, reader = ring(start=64)
    payloads = [record(i) for i in range(7)]
    for p in payloads:
        r.put(p)
    assert_records(reader.drain(max_records=3), payloads[:3])
    assert r.consumer == 64 + 3 * STRIDE
    assert_records(reader.drain(max_records=3), payloads[3:6])
    assert_records(reader.drain(max_records=3), payloads[6:])
    assert len(reader.drain(max_records=3)) == 0
    assert r.consumer == r.producer


def test_max_records_counts_discarded_records_as_taken(ring):
    """A discarded record uses up one of the ``max_records`` slots: fewer can come back, never more."""
    r, reader = ring()
    r.put(record(0), discard=True)
    r.put(record(1))
    r.put(record(2))
    got = reader.drain(max_records=2)
    assert len(got) <= 2
    assert_records(got, [record(1)])
    assert_records(reader.drain(), [record(2)])


def test_max_records_is_a_limit_across_malformed_records(ring):
    r, reader = ring()
    r.put(record(0))
    r.put(b"short")
    for i in range(1, 5):
        r.put(record(i))
    got = reader.drain(max_records=2)
    assert len(got) <= 2, f"asked for at most 2 records, got {len(got)}"


def test_max_records_zero_reads_nothing_and_consumes_nothing(ring):
    r, reader = ring()
    r.put(record(0))
    r.put(record(1))
    got = reader.drain(max_records=0)
    assert len(got) == 0
    assert reader.malformed == 0, "a good record was counted as malformed"
    assert r.consumer == 0, "drain(max_records=0) consumed data"


# -- short records left for the next drain, and a hang --------------------------------
def test_one_drain_consumes_a_trailing_short_record(ring):
    r, reader = ring()
    r.put(record(0))
    r.put(b"tiny")                  # committed, of another length, shorter than one of our records
    assert_records(reader.drain(), [record(0)])
    assert reader.malformed == 1 and reader.pending_bytes() == 0


_HANG_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    import test_ringbuf as t
    r = t.FakeRing(t.PAGE)
    reader = t.RingBufferReader(r.fd, t.PAGE, t.DTYPE)
    r.put(b"tiny", busy=True)       # a short record still being written, and nothing else pending
    got = reader.drain()
    print("returned", len(got), reader.malformed)
""")


def test_drain_returns_while_a_short_record_is_being_written():
    code = _HANG_SCRIPT.format(here=str(Path(__file__).resolve().parent))
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("drain() did not return within 8 s: it spins on the busy short record")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["returned", "0", "0"]


# -- closing and bad sizes -----------------------------------------------------
def _mappings_of(name: str) -> int:
    return sum(name in line for line in Path("/proc/self/maps").read_text().splitlines())


def test_close_unmaps_and_later_drains_are_empty(ring):
    r, reader = ring()
    r.put(record(1))
    mine = _mappings_of(r.name)              # the fake's own mapping
    os_fd_closed_early = os.dup(r.fd)
    reader2 = RingBufferReader(os_fd_closed_early, PAGE, DTYPE)
    os.close(os_fd_closed_early)             # the reader's mappings do not need the fd any more
    assert _mappings_of(r.name) == mine + 2  # consumer page, producer page + data twice
    assert reader2.pending_bytes() == STRIDE
    reader2.close()
    assert _mappings_of(r.name) == mine
    assert len(reader2.drain()) == 0 and reader2.drain().dtype == DTYPE
    reader2.close()                          # twice is fine
    assert r.consumer == 0                   # closing consumed nothing
    assert_records(reader.drain(), [record(1)])
    reader.close()


@pytest.mark.parametrize("size", [0, -PAGE, PAGE // 2, 3 * PAGE, PAGE + 8, 6 * PAGE, 1])
def test_bad_sizes_raise_probe_config_error_before_mapping(size):
    with pytest.raises(ProbeConfigError, match="power of two"):
        RingBufferReader(-1, size, DTYPE)     # fd -1: it must not get as far as mmap


def test_good_sizes_are_accepted(ring):
    for size in (PAGE, 2 * PAGE, 16 * PAGE):
        r, reader = ring(size)
        assert reader.size == size and reader.stride == STRIDE
        reader.close()


def test_stride_is_header_plus_record_padded_to_8():
    for itemsize, stride in [(1, 16), (8, 16), (9, 24), (16, 24), (17, 32), (24, 32), (100, 112)]:
        fd = os.memfd_create("ebt-stride")
        try:
            os.ftruncate(fd, 4 * PAGE)
            reader = RingBufferReader(fd, PAGE, np.dtype(f"V{itemsize}"))
            assert reader.stride == stride
            reader.close()
        finally:
            os.close(fd)


# -- the property -------------------------------------------------------------------
# One written record: ("good", payload) / ("discard", payload) / ("odd", length, discard).
_good = st.binary(min_size=DTYPE.itemsize, max_size=DTYPE.itemsize)
_odd_len = st.integers(0, 120).filter(lambda n: n != DTYPE.itemsize)
_rec = st.one_of(st.tuples(st.just("good"), _good),
                 st.tuples(st.just("discard"), _good),
                 st.tuples(st.just("odd"), _odd_len, st.booleans()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size_pages=st.sampled_from([1, 2]),
       start_wraps=st.integers(0, 2**20), start_off=st.integers(0, 2 * PAGE // 8 - 1),
       rounds=st.lists(st.lists(_rec, max_size=40), min_size=1, max_size=6),
       data=st.data())
def test_property_drain_returns_exactly_the_committed_good_records(size_pages, start_wraps, start_off, rounds,
                                                                    data):
    size = size_pages * PAGE
    start = start_wraps * size + (start_off * 8) % size
    r = FakeRing(size, start)
    try:
        reader = RingBufferReader(r.fd, size, DTYPE)
        written = returned = exp_malformed = exp_discarded = 0
        consumed_bytes = 0
        for batch in rounds:
            expected = []
            for rec in batch:
                length = DTYPE.itemsize if rec[0] != "odd" else rec[1]
                if padded(length) > r.free():
                    break           # the producer would fail the reservation (counted lost in the kernel)
                if rec[0] == "odd":
                    payload = data.draw(st.binary(min_size=length, max_size=length))
                    r.put(payload, discard=rec[2])
                    exp_malformed += 1
                else:
                    r.put(rec[1], discard=rec[0] == "discard")
                    if rec[0] == "discard":
                        exp_discarded += 1
                    else:
                        expected.append(rec[1])
                written += 1
                consumed_bytes += padded(length)
            got = reader.drain()
            assert_records(got, expected)
            returned += len(got)
        assert len(reader.drain()) == 0     # (a short record at the very end waits for this next drain)
        assert r.consumer == r.producer == start + consumed_bytes
        assert reader.malformed == exp_malformed      # other lengths, discarded or not
        assert reader.discarded == exp_discarded      # discarded records of our length
        assert reader.malformed + reader.discarded + returned == written
        reader.close()
    finally:
        r.close()


@settings(max_examples=150, deadline=None)
@given(n_before=st.integers(0, 20), n_after=st.integers(0, 20), start=st.integers(0, 2**30),
       busy_len=st.sampled_from([DTYPE.itemsize, 4, 8, 40, 100]))
def test_property_nothing_past_a_busy_record_until_it_is_committed(n_before, n_after, start, busy_len):
    """A record still being written stops the reader, whatever its length (a short one used to hang drain())."""
    size = 2 * PAGE
    r = FakeRing(size, start * 8)
    try:
        reader = RingBufferReader(r.fd, size, DTYPE)
        before = [record(i) for i in range(n_before)]
        after = [record(100 + i) for i in range(n_after)]
        for p in before:
            r.put(p)
        busy_payload = record(50) if busy_len == DTYPE.itemsize else b"b" * busy_len
        pos = r.put(busy_payload, busy=True)
        for p in after:
            r.put(p)
        assert_records(reader.drain(), before)
        assert r.consumer == pos
        assert len(reader.drain()) == 0 and r.consumer == pos
        r.commit(pos)
        assert_records(reader.drain(), ([busy_payload] if busy_len == DTYPE.itemsize else []) + after)
        assert reader.malformed == (busy_len != DTYPE.itemsize)
        assert r.consumer == r.producer
        reader.close()
    finally:
        r.close()
