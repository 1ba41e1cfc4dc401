"""SortedIndex's batch operations against a plain sorted list, with SortedList's own
invariant check (`_check`) after every step, on small load factors so that sublists split
and merge often."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowactors.engine._sorted import SortedIndex

# An operation: ("add" | "remove", where, how many). "tail" adds sort after everything
# present and "head" removes the smallest entries: the batch paths' fast cases; "any"
# takes values from anywhere (the fallbacks).
_ops = st.lists(
    st.tuples(
        st.sampled_from(("add", "remove")),
        st.sampled_from(("tail", "head", "any")),
        st.integers(0, 40),
    ),
    max_size=25,
)


@given(load=st.sampled_from((4, 5, 8, 1000)), ops=_ops, data=st.data())
@settings(max_examples=400, deadline=None)
def test_batches_leave_what_one_value_at_a_time_leaves(
    load: int, ops: list[tuple[str, str, int]], data: st.DataObject
) -> None:
    index = SortedIndex()
    index._reset(load)
    model: list[int] = []
    fresh = iter(range(10**6))
    for op, where, count in ops:
        if op == "add":
            if where == "tail":
                top = max(model, default=-1)
                values = [top + 1 + next(fresh) for _ in range(count)]
            else:
                values = data.draw(st.lists(st.integers(0, 10**6), max_size=count, unique=True))
                values = [v for v in values if v not in model]
            values = data.draw(st.permutations(values))
            index.add_all(list(values))
            model.extend(values)
        else:
            if where == "head":
                values = sorted(model)[:count]
            else:
                values = data.draw(
                    st.lists(st.sampled_from(model), max_size=count, unique=True)
                    if model
                    else st.just([])
                )
            index.remove_all(list(values))
            for v in values:
                model.remove(v)
        model.sort()
        index._check()
        assert list(index) == model


def test_removing_a_missing_value_raises_value_error() -> None:
    index = SortedIndex(range(10))
    with pytest.raises(ValueError):
        index.remove_all([0, 1, 2, 3, 99])
    with pytest.raises(ValueError):
        index.remove_all([99])


def test_a_head_batch_keeps_the_first_sublist_at_least_half_full() -> None:
    index = SortedIndex(range(100))
    index._reset(8)
    index.remove_all(list(range(6)))  # leaves 2 of the first sublist of 8
    index._check()
    assert list(index) == list(range(6, 100))
    index.add_all(list(range(100, 160)))  # all at the tail: 60 values into sublists of 8
    index._check()
    assert list(index) == list(range(6, 160))
    assert max(len(sub) for sub in index._lists) <= 16
