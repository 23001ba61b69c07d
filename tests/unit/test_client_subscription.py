"""SubscriptionState: assignment, positions, resets."""

from __future__ import annotations

import pytest

from moldau.client.subscription import SubscriptionState
from moldau.client.types import TopicPartition

A0 = TopicPartition("a", 0)
A1 = TopicPartition("a", 1)


def test_new_partitions_wait_for_the_default_reset() -> None:
    sub = SubscriptionState("earliest")
    sub.assign([A0, A1, A0])
    assert sub.assignment() == {A0, A1}
    assert sub.needs_reset() == {A0: "earliest", A1: "earliest"}
    assert sub.fetchable() == []
    sub.seek(A0, 5)
    assert sub.needs_reset() == {A1: "earliest"}
    assert sub.fetchable() == [A0]


def test_reassign_keeps_positions_of_kept_partitions() -> None:
    sub = SubscriptionState()
    sub.assign([A0, A1])
    sub.seek(A0, 3)
    sub.assign([A0])
    assert sub.position(A0) == 3
    assert not sub.is_assigned(A1)
    with pytest.raises(ValueError, match="not assigned"):
        sub.seek(A1, 1)


def test_none_strategy_leaves_positions_missing() -> None:
    sub = SubscriptionState("none")
    sub.assign([A0])
    assert sub.missing_position() == [A0]
    sub.seek(A0, 0)
    assert sub.missing_position() == []


def test_request_reset_pause_resume() -> None:
    sub = SubscriptionState()
    sub.assign([A0])
    sub.seek(A0, 10)
    sub.request_reset(A0, "earliest")
    assert sub.position(A0) is None and sub.needs_reset() == {A0: "earliest"}
    sub.seek(A0, 1)
    sub.pause(A0)
    assert sub.fetchable() == []
    sub.resume(A0)
    assert sub.fetchable() == [A0]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="auto_offset_reset"):
        SubscriptionState("smallest")
    sub = SubscriptionState()
    sub.assign([A0])
    with pytest.raises(ValueError):
        sub.seek(A0, -1)
