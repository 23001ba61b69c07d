"""The timer heap behind tick()/next_deadline(), and GroupConfig from properties."""

from __future__ import annotations

from moldau.group import GroupConfig
from moldau.group.timers import Timers


def test_earliest_deadline_first_and_rescheduling_moves_a_key() -> None:
    t: Timers[str] = Timers()
    t.schedule("a", 30)
    t.schedule("b", 10)
    t.schedule("c", 20)
    t.schedule("b", 40)  # a heartbeat: b's deadline moves
    assert t.next_deadline() == 20
    assert list(t.pop_due(30)) == ["c", "a"]
    assert t.next_deadline() == 40


def test_cancelled_keys_never_fall_due() -> None:
    t: Timers[str] = Timers()
    t.schedule("a", 10)
    t.cancel("a")
    t.cancel("never scheduled")
    assert t.next_deadline() is None
    assert list(t.pop_due(100)) == []


def test_handlers_see_each_others_changes() -> None:
    t: Timers[str] = Timers()
    t.schedule("a", 10)
    t.schedule("b", 10)
    due = t.pop_due(10)
    assert next(due) == "a"
    t.cancel("b")  # a's handler removed b
    assert list(due) == []


def test_deadlines_set_during_a_tick_wait_for_the_next_one() -> None:
    t: Timers[str] = Timers()
    t.schedule("a", 10)
    seen = []
    for key in t.pop_due(10):
        seen.append(key)
        t.schedule("again", 10)  # due already, but set by a handler of this tick
    assert seen == ["a"]
    assert list(t.pop_due(10)) == ["again"]


def test_group_config_from_kafka_properties() -> None:
    config = GroupConfig.from_properties(
        {
            "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.num.partitions": "3",
            "log.dirs": "/var/lib/moldau",  # someone else's setting
        }
    )
    assert config.group_initial_rebalance_delay_ms == 0
    assert config.offsets_topic_num_partitions == 3
    assert config.group_min_session_timeout_ms == 6000
    assert config.offsets_retention_ms == 10080 * 60_000
