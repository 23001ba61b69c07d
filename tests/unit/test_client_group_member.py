"""The range assignor of the client's group member, against Kafka's rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from moldau.client.group_member import range_assign


def test_ranges_are_contiguous_and_the_first_members_get_the_extra() -> None:
    shares = range_assign({"b": ["t"], "a": ["t"], "c": ["t", "u"]}, {"t": 7, "u": 2})
    assert shares == {"a": {"t": [0, 1, 2]}, "b": {"t": [3, 4]}, "c": {"t": [5, 6], "u": [0, 1]}}


def test_topics_the_leader_does_not_know_are_skipped() -> None:
    assert range_assign({"a": ["gone"]}, {}) == {"a": {}}


@settings(max_examples=50)
@given(
    st.dictionaries(
        st.text("abcdef", min_size=1, max_size=3),
        st.lists(st.sampled_from(["t", "u", "v"]), min_size=1, max_size=3),
        min_size=1,
        max_size=6,
    ),
    st.fixed_dictionaries({"t": st.integers(0, 20), "u": st.integers(0, 20)}),
)
def test_every_partition_goes_to_exactly_one_subscriber(
    subscriptions: dict[str, list[str]], partitions: dict[str, int]
) -> None:
    shares = range_assign(subscriptions, partitions)
    for topic, count in partitions.items():
        owners = [
            (m, p) for m, share in shares.items() for p in share.get(topic, []) if topic in share
        ]
        subscribers = [m for m, topics in subscriptions.items() if topic in topics]
        expected = list(range(count)) if subscribers else []
        assert sorted(p for _, p in owners) == expected
        assert all(m in subscribers for m, _ in owners)
        sizes = [len(shares[m].get(topic, [])) for m in subscribers]
        assert not sizes or max(sizes) - min(sizes) <= 1
