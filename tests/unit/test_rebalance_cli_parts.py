"""The pure parts of ``moldau cluster rebalance`` / ``reassign``: Kafka's
reassignment JSON, the throttled-replica lists, the plan and progress text."""

from __future__ import annotations

import json

import pytest

from moldau.cli.cluster_rebalance import (
    Progress,
    read_reassignment,
    reassignment_json,
    render_plan,
    throttled_replicas,
)
from moldau.cli.common import CliError
from moldau.cluster.balance import Plan


def test_kafka_reassignment_json_round_trips() -> None:
    text = json.dumps(
        {
            "version": 1,
            "partitions": [
                {"topic": "a", "partition": 1, "replicas": [3, 1], "log_dirs": ["any", "any"]},
                {"topic": "a", "partition": 0, "replicas": [2]},
            ],
        }
    )
    targets = read_reassignment(text)
    assert targets == {("a", 1): (3, 1), ("a", 0): (2,)}
    assert read_reassignment(json.dumps(reassignment_json(targets))) == targets


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"version": 2, "partitions": []}, "unsupported plan version 2"),
        ({"partitions": []}, "lists no partitions"),
        ({"partitions": [{"topic": "a", "partition": 0}]}, "needs topic, partition and replicas"),
        ({"partitions": [{"topic": "a", "partition": "0", "replicas": [1]}]}, "a topic name"),
        ({"partitions": [{"topic": "a", "partition": 0, "replicas": []}]}, "a topic name"),
        ({"partitions": [{"topic": "a", "partition": 0, "replicas": [1, 1]}]}, "twice"),
        (
            {"partitions": [{"topic": "a", "partition": 0, "replicas": [1], "log_dirs": ["/d"]}]},
            'log_dirs other than "any"',
        ),
        (
            {"partitions": [{"topic": "a", "partition": 0, "replicas": [1]}] * 2},
            "a-0 is listed twice",
        ),
    ],
)
def test_a_bad_file_is_one_line(document: dict[str, object], says: str) -> None:
    with pytest.raises(CliError, match=says) as raised:
        read_reassignment(json.dumps(document))
    assert "\n" not in str(raised.value)


def test_throttled_replicas_in_kafkas_format() -> None:
    # Leader side: the replicas a moving partition has now; follower side:
    # the replicas being added (kafka-reassign-partitions.sh's lists).
    changes = {("t", 0): ((0, 1), (2, 1)), ("t", 3): ((1, 2), (1, 2, 0)), ("u", 1): ((5,), (4,))}
    assert throttled_replicas(changes) == {
        "t": {
            "leader.replication.throttled.replicas": "0:0,0:1,3:1,3:2",
            "follower.replication.throttled.replicas": "0:2,3:0",
        },
        "u": {
            "leader.replication.throttled.replicas": "1:5",
            "follower.replication.throttled.replicas": "1:4",
        },
    }


def test_the_plan_text() -> None:
    plan = Plan(
        current={("t", 0): (0, 1), ("t", 1): (1, 0)},
        target={("t", 0): (2, 1), ("t", 1): (0, 1)},
        brokers=(0, 1, 2),
    )
    assert render_plan(plan, {("t", 0): 2048}) == [
        "PARTITION  REPLICAS      TARGET  MOVES",
        "t-0        0,1       ->  2,1     +2 -0",
        "t-1        1,0       ->  0,1     order",
        "",
        "BROKER  REPLICAS      AFTER  LEADERS      AFTER",
        "0       2         ->  1      1        ->  1",
        "1       2         ->  2      1        ->  0",
        "2       0         ->  1      0        ->  1",
        "",
        "2 partitions change, 1 replica move (2.0 KiB to copy)",
    ]
    nothing = Plan(current={("t", 0): (0,)}, target={("t", 0): (0,)}, brokers=(0,))
    assert render_plan(nothing, {}) == [
        "nothing to move: the replicas are where the plan wants them"
    ]


def test_the_progress_line() -> None:
    going = Progress(done=1, total=4, copied=3 << 20, to_copy=9 << 20, elapsed=3.0)
    assert going.line() == ("1/4 partitions done, 3.0 MiB of 9.0 MiB copied, 1.0 MiB/s, ETA 6s")
    done = Progress(done=4, total=4, copied=9 << 20, to_copy=9 << 20, elapsed=9.0)
    assert done.line().endswith("ETA -")
