"""Mutated DICOMDIR bytes: parsing finishes fast and raises nothing but DicomdirUnreadable.

Byte flips, truncation, inserted and deleted runs, and overwritten 32-bit words (offsets and
lengths) on DICOMDIRs in every encoding; the same bytes go through read_header and is_dicomdir
(NotDicom / TruncatedFile only). Deterministic (derandomized, no example database).
"""

from __future__ import annotations

import io
import struct
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.dicom.header import read_header
from app.core.dicomdir.parse import is_dicomdir, parse_dicomdir
from app.core.errors import DicomdirUnreadable, NotDicom, TruncatedFile
from tests import dicomdir_bytes as db
from tests.media import dicomdirtests_root


def _bases() -> list[bytes]:
    roots = db.simple_tree(2, 1, 2, 3, charset="ISO_IR 100", name="Müller^Hans")
    roots[0].children[0].children[0].icon = db.icon(8, 8)
    roots[1].children[0].children[1].children[0].icon = db.icon(4, 4, bits=1)
    roots[1].children[0].in_use = False
    return [
        db.encode(roots),
        db.encode(roots, explicit=False, undefined_items=True, undefined_sequences=True),
        db.encode(roots, little=False, preamble=False),
        db.encode(roots, meta_ts=db.IMPLICIT_LE, offsets="zero"),
        (dicomdirtests_root() / "DICOMDIR").read_bytes()[:6000],
    ]


BASES = _bases()
MAX_SECONDS = 2.0

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 64)),
    st.tuples(st.just("word"), st.integers(0, 1 << 20),
              st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 132, 396, 0xFFFEE000, 8])),
)


def mutate(data: bytes, ops: list[tuple[str, int, object]]) -> bytes:
    buf = bytearray(data)
    for op, pos, arg in ops:
        if not buf:
            break
        i = pos % len(buf)
        if op == "flip":
            buf[i] ^= int(arg)  # type: ignore[call-overload]
        elif op == "truncate":
            del buf[i:]
        elif op == "insert":
            buf[i:i] = arg  # type: ignore[index]
        elif op == "delete":
            del buf[i:i + int(arg)]  # type: ignore[call-overload]
        elif op == "word" and i + 4 <= len(buf):
            buf[i & ~1:(i & ~1) + 4] = struct.pack("<I", int(arg))  # type: ignore[call-overload]
    return bytes(buf)


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(base=st.integers(0, len(BASES) - 1), ops=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_dicomdir_never_crashes_or_hangs(base: int, ops: list) -> None:
    data = mutate(BASES[base], ops)
    t = time.perf_counter()
    try:
        res = parse_dicomdir(data, "DICOMDIR")
    except DicomdirUnreadable as exc:
        assert str(exc).startswith("DICOMDIR")
    else:
        # Whatever was recovered is a well-formed tree of the model.
        for p in res.patients:
            for inst in p.instances():
                assert inst.path is None and inst.dicomdir == "DICOMDIR"
                assert inst.file_id is None or all(inst.file_id)
        for prob in res.problems:
            assert prob.severity in ("error", "warning", "info") and prob.message
    assert isinstance(is_dicomdir(data[:4096]), bool)
    try:
        read_header(io.BytesIO(data), "DICOMDIR")
    except (NotDicom, TruncatedFile):
        pass
    assert time.perf_counter() - t < MAX_SECONDS


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(data=st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    t = time.perf_counter()
    try:
        parse_dicomdir(data, "X")
    except DicomdirUnreadable:
        pass
    for prefix in (b"", bytes(128) + b"DICM"):
        try:
            read_header(io.BytesIO(prefix + data), "X")
        except (NotDicom, TruncatedFile):
            pass
    assert time.perf_counter() - t < MAX_SECONDS
