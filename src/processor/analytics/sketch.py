"""Mergeable latency sketches (DDSketch, 1 % relative accuracy) and exact percentiles. Pure.

A sketch is kept as bin counts: ``key -> count`` for positive and negative values plus a zero
count, with the keys of ddsketch's LogarithmicMapping. Buckets are built from bin counts that
the database groups (so raw values never travel to Python), stored in ddsketch's protobuf
form, merged by adding counts, and read back through ddsketch for quantiles.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb import ddsketch_pb2 as pb
from ddsketch.pb.proto import DDSketchProto

RELATIVE_ACCURACY = 0.01
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
# key(v) = ceil(ln(v) / LOG_GAMMA): the same key PostgreSQL computes in SQL.
LOG_GAMMA = math.log1p(MAPPING.gamma - 1)
MIN_POSSIBLE = MAPPING.min_possible
# Finite doubles only: NaN and infinities are left out of every aggregate.
FINITE_MAX = 1.7976931348623157e308
QUANTILES = (0.5, 0.9, 0.95, 0.99)


def sign_of(value: float | None) -> int | None:
    """1, -1 or 0 (the zero bin), as the sketch files a value; None when it has no value."""
    if value is None or not -FINITE_MAX <= value <= FINITE_MAX:
        return None
    if value > MIN_POSSIBLE:
        return 1
    if value < -MIN_POSSIBLE:
        return -1
    return 0


def key_of(value: float | None) -> int | None:
    """The bin key of |value| (0 for the zero bin)."""
    sign = sign_of(value)
    if not sign:
        return 0 if sign == 0 else None
    assert value is not None
    return int(MAPPING.key(abs(value)))


@dataclass
class Bins:
    positive: dict[int, float] = field(default_factory=dict)
    negative: dict[int, float] = field(default_factory=dict)
    zero: float = 0.0

    @property
    def count(self) -> float:
        return self.zero + sum(self.positive.values()) + sum(self.negative.values())

    def add(self, sign: int, key: int, count: float) -> None:
        if sign == 0:
            self.zero += count
            return
        store = self.positive if sign > 0 else self.negative
        store[key] = store.get(key, 0.0) + count

    def add_value(self, value: float | None) -> None:
        sign = sign_of(value)
        if sign is not None:
            self.add(sign, key_of(value) or 0, 1.0)

    def merge(self, other: Bins) -> None:
        self.zero += other.zero
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0.0) + count

    def encode(self) -> bytes:
        return pb.DDSketch(
            mapping=pb.IndexMapping(
                gamma=MAPPING.gamma, indexOffset=0.0, interpolation=pb.IndexMapping.NONE
            ),
            positiveValues=_store(self.positive),
            negativeValues=_store(self.negative),
            zeroCount=self.zero,
        ).SerializeToString()

    def quantiles(self, qs: Sequence[float] = QUANTILES) -> list[float | None]:
        if self.count == 0:
            return [None for _ in qs]
        proto = pb.DDSketch.FromString(self.encode())
        sketch = DDSketchProto.from_proto(proto)
        return [float(sketch.get_quantile_value(q)) for q in qs]


def _store(counts: dict[int, float]) -> pb.Store:
    if not counts:
        return pb.Store()
    low, high = min(counts), max(counts)
    return pb.Store(
        contiguousBinCounts=[counts.get(k, 0.0) for k in range(low, high + 1)],
        contiguousBinIndexOffset=low,
    )


def decode(blob: bytes) -> Bins:
    proto = pb.DDSketch.FromString(blob)
    if not math.isclose(proto.mapping.gamma, MAPPING.gamma, rel_tol=1e-12):
        raise ValueError(f"sketch has gamma {proto.mapping.gamma}, expected {MAPPING.gamma}")
    bins = Bins(zero=proto.zeroCount)
    for target, store in (
        (bins.positive, proto.positiveValues),
        (bins.negative, proto.negativeValues),
    ):
        key = store.contiguousBinIndexOffset
        for count in store.contiguousBinCounts:
            if count:
                target[key] = count
            key += 1
        for k, count in store.binCounts.items():  # the sparse form other writers may use
            target[k] = target.get(k, 0.0) + count
    return bins


class _Dense:
    """Bin counts from ``offset`` on, added a whole stored array at a time (C-level loops):
    merging a range's hundreds of rollup sketches must not cost a Python step per bin."""

    def __init__(self) -> None:
        self.offset = 0
        self.counts: list[float] = []

    def add(self, offset: int, counts: Sequence[float]) -> None:
        if not counts:
            return
        if not self.counts:
            self.offset, self.counts = offset, list(counts)
            return
        if offset < self.offset:
            self.counts[:0] = [0.0] * (self.offset - offset)
            self.offset = offset
        short = offset + len(counts) - (self.offset + len(self.counts))
        if short > 0:
            self.counts.extend([0.0] * short)
        i = offset - self.offset
        part = slice(i, i + len(counts))
        self.counts[part] = map(operator.add, self.counts[part], counts)

    def into(self, target: dict[int, float]) -> None:
        for key, count in enumerate(self.counts, self.offset):
            if count:
                target[key] = target.get(key, 0.0) + count


def merge(blobs: Iterable[bytes | None]) -> Bins:
    """All sketches added together: the sketch of the union of their values (the same bins
    as decoding each and ``Bins.merge``-ing them in order)."""
    dense = (_Dense(), _Dense())
    sparse = Bins()
    for blob in blobs:
        if not blob:
            continue
        proto = pb.DDSketch.FromString(bytes(blob))
        if not math.isclose(proto.mapping.gamma, MAPPING.gamma, rel_tol=1e-12):
            raise ValueError(f"sketch has gamma {proto.mapping.gamma}, expected {MAPPING.gamma}")
        sparse.zero += proto.zeroCount
        for acc, sign, store in (
            (dense[0], 1, proto.positiveValues),
            (dense[1], -1, proto.negativeValues),
        ):
            acc.add(store.contiguousBinIndexOffset, store.contiguousBinCounts)
            for key, count in store.binCounts.items():  # the sparse form other writers may use
                sparse.add(sign, key, count)
    total = Bins(zero=sparse.zero)
    dense[0].into(total.positive)
    dense[1].into(total.negative)
    total.merge(Bins(sparse.positive, sparse.negative))
    return total


def bins_of(values: Iterable[float | None]) -> Bins:
    bins = Bins()
    for value in values:
        bins.add_value(value)
    return bins


def library_sketch(values: Iterable[float]) -> DDSketch:
    """ddsketch's own sketch of ``values``, for checking ours against it."""
    sketch = DDSketch(RELATIVE_ACCURACY)
    for value in values:
        sketch.add(value)
    return sketch


def percentile_cont(ordered: Sequence[float], q: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation at position q * (n - 1)."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


class PercentileCont:
    """SQLite aggregate ``percentile_cont(value, q)`` with PostgreSQL's semantics."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.q = 0.5

    def step(self, value: float | None, q: float) -> None:
        self.q = q
        if value is not None and -FINITE_MAX <= value <= FINITE_MAX:
            self.values.append(value)

    def finalize(self) -> float | None:
        self.values.sort()
        return percentile_cont(self.values, self.q)
