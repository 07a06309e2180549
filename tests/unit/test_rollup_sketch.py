"""Sketches and exact percentiles: pure functions, no database."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.analytics import sketch
from processor.analytics.sketch import Bins, bins_of, merge, percentile_cont

values = st.lists(
    st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)


@pytest.mark.parametrize(
    ("data", "q", "expected"),
    [
        ([1.0], 0.99, 1.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([1.0, 2.0, 3.0, 4.0], 0.9, 3.7),  # position 2.7: 3 + 0.7 * (4 - 3)
        ([5.0, 10.0, 20.0], 0.5, 10.0),
        ([], 0.5, None),
    ],
)
def test_percentile_cont_interpolates_like_postgresql(data, q, expected):
    got = percentile_cont(data, q)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_the_sqlite_aggregate_gives_percentile_cont_and_skips_missing_values():
    agg = sketch.PercentileCont()
    for v in (4.0, None, 1.0, float("nan"), 3.0, 2.0):
        agg.step(v, 0.9)
    assert agg.finalize() == pytest.approx(3.7)


def bracket(ordered: list[float], q: float) -> tuple[float, float]:
    """The two raw samples around the exact percentile."""
    position = q * (len(ordered) - 1)
    return ordered[math.floor(position)], ordered[math.ceil(position)]


@settings(max_examples=200, deadline=None)
@given(values)
def test_sketch_quantiles_are_within_one_percent_of_the_samples_around_the_exact_rank(data):
    ordered = sorted(data)
    got = bins_of(data).quantiles()
    for q, value in zip(sketch.QUANTILES, got, strict=True):
        low, high = bracket(ordered, q)
        assert value is not None
        assert low * (1 - sketch.RELATIVE_ACCURACY) - 1e-12 <= value
        assert value <= high * (1 + sketch.RELATIVE_ACCURACY) + 1e-12


@settings(max_examples=100, deadline=None)
@given(st.lists(values, min_size=1, max_size=6))
def test_merged_encoded_sketches_equal_one_sketch_of_all_values(parts):
    merged = merge(bins_of(p).encode() for p in parts)
    whole = bins_of([v for p in parts for v in p])
    assert merged == whole
    assert merged.quantiles() == whole.quantiles()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=200,
    )
)
def test_our_bins_answer_what_the_ddsketch_library_answers(data):
    ours = bins_of(data)
    theirs = sketch.library_sketch(data)
    assert ours.count == theirs.count
    for q in (0.0, 0.25, *sketch.QUANTILES, 1.0):
        assert ours.quantiles((q,))[0] == pytest.approx(theirs.get_quantile_value(q))


def test_non_finite_and_missing_values_are_left_out():
    bins = bins_of([1.0, None, float("nan"), float("inf"), -float("inf"), 0.0])
    assert bins.count == 2
    assert bins.zero == 1


def test_a_sketch_with_another_accuracy_is_refused():
    foreign = sketch.pb.DDSketch(mapping=sketch.pb.IndexMapping(gamma=1.05)).SerializeToString()
    with pytest.raises(ValueError, match="gamma"):
        sketch.decode(foreign)


def test_an_empty_sketch_has_no_quantiles():
    assert Bins().quantiles() == [None, None, None, None]
    assert merge([None, b""]).count == 0
