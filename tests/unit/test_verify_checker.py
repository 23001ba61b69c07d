"""The ``moldau verify`` history checker: every kind of violation is found in
a hand-made history, and clean histories (hand-made and random runs of a
correct cluster) pass. And the replica comparison over hand-made segments, and
the nemesis over shell-command targets."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moldau.verify.checker import KINDS, check
from moldau.verify.faults import Nemesis, parse_fault_commands
from moldau.verify.history import (
    FINAL_READER,
    Assignment,
    Commit,
    FinalRead,
    History,
    Read,
    Send,
)
from moldau.verify.replicas import batches, compare_replicas


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def clean_history() -> History:
    """Two partitions, six acked values, one member reading and committing
    them all, a second member taking partition 1 over, a complete final read."""
    tick = Clock()
    h = History(topic="t", partitions=2)
    logs: dict[int, list[str]] = {0: [], 1: []}
    for seq in range(6):
        partition = seq % 2
        value = f"v{seq}"
        sent = tick()
        logs[partition].append(value)
        h.sends.append(
            Send("p", seq, value, partition, None, sent, "ok", len(logs[partition]) - 1, tick())
        )
    h.assignments.append(Assignment("a", tick(), (0, 1)))
    for partition in (0, 1):
        for offset, value in enumerate(logs[partition][:2]):
            h.reads.append(Read("a", partition, offset, value, tick()))
        h.commits.append(Commit("a", partition, 2, tick(), tick(), True))
    h.assignments.append(Assignment("a", tick(), ()))
    h.assignments.append(Assignment("a", tick(), (0,)))
    h.assignments.append(Assignment("b", tick(), (1,)))
    for member, partition in (("a", 0), ("b", 1)):
        for offset in range(2, 3):
            h.reads.append(Read(member, partition, offset, logs[partition][offset], tick()))
        h.commits.append(Commit(member, partition, 3, tick(), tick(), True))
    for partition, values in logs.items():
        for offset, value in enumerate(values):
            h.reads.append(Read(FINAL_READER, partition, offset, value, tick()))
        h.final.append(FinalRead(partition, len(values), True))
    return h


def kinds(history: History) -> dict[str, int]:
    return {kind: n for kind, n in check(history).counts.items() if n}


def test_a_clean_history_passes() -> None:
    verdict = check(clean_history())
    assert verdict.ok, verdict.examples
    assert verdict.stats["acknowledged"] == 6
    assert verdict.stats["final_reads"] == 6


def test_an_acked_value_missing_from_the_final_read_is_lost() -> None:
    h = clean_history()
    h.reads = [r for r in h.reads if not (r.consumer == FINAL_READER and r.value == "v4")]
    h.final = [replace(f, end=2) if f.partition == 0 else f for f in h.final]
    h.reads = [
        r
        for r in h.reads
        if not (r.consumer == FINAL_READER and r.partition == 0 and r.offset >= 2)
    ]
    verdict = check(h)
    assert kinds(h) == {"lost": 1}
    assert verdict.examples["lost"] == [{"value": "v4", "partition": 0, "offset": 2}]


def test_without_a_final_read_an_acked_value_never_read_below_a_later_read_is_lost() -> None:
    h = clean_history()
    h.final = []
    h.reads = [r for r in h.reads if r.value != "v2"]  # p0 offset 1; offset 2 was read
    assert kinds(h) == {"lost": 1}
    h.reads = [r for r in h.reads if not (r.partition == 0 and r.offset > 1)]
    assert "lost" not in kinds(h)  # nobody read past it: not proven lost


def test_a_value_read_at_two_offsets_is_duplicated() -> None:
    h = clean_history()
    h.reads.append(Read(FINAL_READER, 0, 3, "v0", 99.0))
    h.final = [replace(f, end=4) if f.partition == 0 else f for f in h.final]
    assert kinds(h) == {"duplicated": 1}


def test_values_of_one_producer_out_of_send_order_are_reordered() -> None:
    h = clean_history()
    swapped = {"v0": 1, "v2": 0}
    h.sends = [replace(s, offset=swapped.get(s.value, s.offset)) for s in h.sends]
    other = {"v0": "v2", "v2": "v0"}
    h.reads = [replace(r, value=other.get(r.value, r.value)) for r in h.reads]
    assert kinds(h) == {"reordered": 1}
    h.idempotent = False
    assert kinds(h) == {}


def test_an_offset_read_with_two_values_is_a_conflict() -> None:
    h = clean_history()
    h.reads.append(Read("b", 1, 0, "other", 99.0))
    assert kinds(h) == {"offset_conflict": 1}


def test_an_ack_that_disagrees_with_the_read_is_a_conflict() -> None:
    h = clean_history()
    h.sends = [replace(s, offset=0) if s.value == "v2" else s for s in h.sends]
    assert kinds(h)["offset_conflict"] == 1


def test_a_member_starting_above_the_committed_offset_skipped() -> None:
    h = clean_history()
    h.reads = [r for r in h.reads if not (r.consumer == "b" and r.offset == 2)]
    h.reads.append(Read("b", 1, 3, "x", 98.0))  # b resumes after commit 2 at 3
    h.final = [replace(f, end=4) if f.partition == 1 else f for f in h.final]
    h.reads.append(Read(FINAL_READER, 1, 3, "x", 99.0))
    assert kinds(h) == {"skipped": 1}


def test_a_member_jumping_over_stored_offsets_skipped() -> None:
    h = clean_history()
    h.reads = [
        replace(r, offset=2, value="v5")
        if (r.consumer, r.partition, r.offset) == ("a", 1, 1)
        else r
        for r in h.reads
    ]
    verdict = check(h)
    assert kinds(h) == {"skipped": 1}
    assert verdict.examples["skipped"][0] == {"member": "a", "partition": 1, "read": 0, "then": 2}


def test_a_fresh_member_not_starting_at_zero_skipped() -> None:
    h = clean_history()
    h.reads = [r for r in h.reads if (r.consumer, r.partition, r.offset) != ("a", 0, 0)]
    assert kinds(h) == {"skipped": 1}


def test_a_member_resuming_below_an_accepted_commit_found_it_lost() -> None:
    h = clean_history()
    resumed = next(r for r in h.reads if r.consumer == "b")
    h.reads.append(Read("b", 1, 1, "v3", resumed.time - 0.5))  # a committed 2 before
    verdict = check(h)
    assert kinds(h) == {"commit_lost": 1}
    assert verdict.examples["commit_lost"] == [
        {"member": "b", "partition": 1, "committed": 2, "first_read": 1}
    ]
    h.commits = [replace(c, ok=False) if c.offset == 2 else c for c in h.commits]
    assert kinds(h) == {}  # a rejected commit promises nothing


def test_commits_from_two_owners_of_a_partition_are_double_owned() -> None:
    h = clean_history()
    start = max(a.time for a in h.assignments) + 1
    h.assignments.append(Assignment("b", start, (0, 1)))  # b takes 0 while a keeps it
    h.commits.append(Commit("b", 0, 3, start + 1, start + 2, True))
    h.commits.append(Commit("a", 0, 3, start + 3, start + 4, True))
    assert kinds(h) == {"double_owned": 1}
    # a's later commit rejected: the coordinator fenced it, nothing wrong
    h.commits[-1] = replace(h.commits[-1], ok=False)
    assert kinds(h) == {}


def test_failed_and_unknown_sends_may_be_present_or_absent() -> None:
    h = clean_history()
    h.sends.append(Send("p", 6, "v6", 0, None, 50.0, "failed", None, 51.0, "timed out"))
    h.sends.append(Send("p", 7, "v7", 1, None, 52.0, "unknown"))
    h.reads.append(Read(FINAL_READER, 0, 3, "v6", 99.0))
    h.final = [replace(f, end=4) if f.partition == 0 else f for f in h.final]
    assert kinds(h) == {}


def test_history_json_round_trip() -> None:
    h = clean_history()
    h.info["faults"] = [{"kind": "kill", "target": "1"}]
    assert History.from_json(h.to_json()) == h


# -- random runs of a correct cluster ------------------------------------------


@st.composite
def correct_runs(draw: st.DrawFn) -> History:
    """A history a correct cluster could give: acked values where they were
    appended, failed ones appended or not, group generations in which each
    partition has one owner who reads on from the committed offset and
    commits, and a complete final read."""
    partitions = draw(st.integers(1, 4))
    members = ["m0", "m1", "m2"][: draw(st.integers(1, 3))]
    tick = Clock()
    h = History(topic="t", partitions=partitions)
    logs: list[list[str]] = [[] for _ in range(partitions)]
    seqs = itertools.count()
    for n in range(draw(st.integers(0, 30))):
        producer = f"p{n % 2}"
        partition = draw(st.integers(0, partitions - 1))
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "failed", "unknown"]))
        value = f"v{n}"
        stored = outcome == "ok" or draw(st.booleans())
        if stored:
            logs[partition].append(value)
        offset = len(logs[partition]) - 1 if outcome == "ok" else None
        h.sends.append(
            Send(producer, next(seqs), value, partition, None, tick(), outcome, offset, tick())
        )
    committed = [0] * partitions
    for _ in range(draw(st.integers(0, 4))):
        for member in members:
            h.assignments.append(Assignment(member, tick(), ()))
        owners = [draw(st.sampled_from(members)) for _ in range(partitions)]
        for member in members:
            mine = tuple(p for p in range(partitions) if owners[p] == member)
            h.assignments.append(Assignment(member, tick(), mine))
        for partition, member in enumerate(owners):
            start = committed[partition]
            end = draw(st.integers(start, len(logs[partition])))
            for offset in range(start, end):
                h.reads.append(Read(member, partition, offset, logs[partition][offset], tick()))
            if end > start:
                ok = draw(st.booleans())
                h.commits.append(Commit(member, partition, end, tick(), tick(), ok))
                if ok:
                    committed[partition] = end
    for partition, log in enumerate(logs):
        for offset, value in enumerate(log):
            h.reads.append(Read(FINAL_READER, partition, offset, value, tick()))
        h.final.append(FinalRead(partition, len(log), True))
    return h


@settings(max_examples=200, deadline=None)
@given(correct_runs())
def test_random_correct_runs_are_clean(history: History) -> None:
    verdict = check(history)
    assert verdict.ok, verdict.examples


@settings(max_examples=100, deadline=None)
@given(correct_runs(), st.data())
def test_dropping_an_acked_value_from_the_log_is_always_caught(
    history: History, data: st.DataObject
) -> None:
    acked = [s for s in history.sends if s.outcome == "ok"]
    if not acked:
        return
    victim = data.draw(st.sampled_from(acked))
    history.reads = [
        r for r in history.reads if not (r.consumer == FINAL_READER and r.value == victim.value)
    ]
    verdict = check(history)
    assert verdict.counts["lost"] == 1
    assert verdict.examples["lost"][0]["value"] == victim.value
    assert set(KINDS) >= {k for k, n in verdict.counts.items() if n}


# -- replicas compared below the high watermark --------------------------------


def batch(base: int, count: int, payload: bytes = b"x") -> bytes:
    """A v2 batch header (CRC not checked here) and a payload."""
    rest = (0).to_bytes(4, "big") + b"\x02" + bytes(4) + bytes(2) + (count - 1).to_bytes(4, "big")
    body = rest + payload
    return base.to_bytes(8, "big") + len(body).to_bytes(4, "big") + body


def write_replica(root: Path, broker: int, *segments: bytes) -> None:
    partition_dir = root / f"broker-{broker}" / "data" / "t-0"
    partition_dir.mkdir(parents=True)
    offset = 0
    for segment in segments:
        (partition_dir / f"{offset:020d}.log").write_bytes(segment)
        offset += 1000


def test_batches_reads_whole_batches_and_drops_a_torn_tail() -> None:
    data = batch(0, 2) + batch(2, 3) + batch(5, 1)[:-3]
    assert [last for last, _ in batches(data)] == [1, 4]


def test_identical_replicas_below_the_high_watermark(tmp_path: Path) -> None:
    log = [batch(0, 2, b"a"), batch(2, 2, b"b"), batch(4, 2, b"c")]
    write_replica(tmp_path, 0, log[0] + log[1], log[2])  # rolled: two segments
    write_replica(tmp_path, 1, log[0] + log[1] + log[2])
    write_replica(tmp_path, 2, log[0] + log[1] + batch(4, 2, b"other"))  # above the HW
    report = compare_replicas(tmp_path, "t", {0: 4})
    assert report.identical and not report.behind
    assert report.compared == {0: {0: 2, 1: 2, 2: 2}}
    assert not compare_replicas(tmp_path, "t", {0: 6}).identical


def test_diverged_and_behind_replicas(tmp_path: Path) -> None:
    write_replica(tmp_path, 0, batch(0, 2, b"a") + batch(2, 2, b"b"))
    write_replica(tmp_path, 1, batch(0, 2, b"a"))
    write_replica(tmp_path, 2, batch(0, 2, b"z") + batch(2, 2, b"b"))
    report = compare_replicas(tmp_path, "t", {0: 4})
    assert report.behind == [{"partition": 0, "broker": 1, "batches": 1, "of": 2}]
    assert report.diverged == [{"partition": 0, "brokers": [0, 2], "batch": 0, "last_offset": 1}]


# -- the nemesis over shell-command targets --------------------------------------


def test_fault_commands_run_and_are_undone_at_exit(tmp_path: Path) -> None:
    log = tmp_path / "log"
    actions = ("kill", "start", "pause", "resume")
    targets = parse_fault_commands([f"1:{a}=echo {a} >> {log}" for a in actions])
    nemesis = Nemesis(
        targets, ["kill", "pause"], interval=0.01, fault_time=600, role="leader",
        resolve=lambda role: 1, seed=0,
    )  # fmt: skip
    with nemesis:
        deadline = time.monotonic() + 10
        while not (log.exists() and log.read_text()):
            assert time.monotonic() < deadline, "no fault injected"
            time.sleep(0.01)
    # left in the middle of a 600 s fault: undone on the way out
    assert log.read_text().split() in (["kill", "start"], ["pause", "resume"])
    assert nemesis.events[0].healed is not None and nemesis.events[0].error is None


def test_fault_targets_that_cannot_play_the_role_or_the_kind() -> None:
    only_kill = parse_fault_commands(["k:kill=true", "k:start=true"])
    assert Nemesis(only_kill, ["pause"], interval=1, fault_time=1).inject_one().kind == "none"
    nobody = Nemesis(only_kill, ["kill"], interval=1, fault_time=1, role="controller")
    assert nobody.inject_one().kind == "none"  # no resolver: nobody plays it
    failing = Nemesis(
        parse_fault_commands(["k:kill=exit 3", "k:start=true"]), ["kill"], interval=1, fault_time=1
    )
    event = failing.inject_one()
    assert event.kind == "kill" and "exited 3" in (event.error or "")
    for bad in ("k:kill", "k=kill=x", "k:explode=x", ":kill=x"):
        with pytest.raises(ValueError):
            parse_fault_commands([bad])


# -- transactional runs ---------------------------------------------------------


def transactional_history() -> History:
    """One partition: transaction 0 aborted (offsets 0-1, marker at 2),
    transaction 1 committed (offsets 3-4, marker at 5). A member reads the
    committed values from the start (the first at offset 3) and commits;
    the final read sees them."""
    tick = Clock()
    h = History(topic="t", partitions=1)
    for seq, (txn, outcome, offset) in enumerate(
        [(0, "aborted", 0), (0, "aborted", 1), (1, "ok", 3), (1, "ok", 4)]
    ):
        h.sends.append(Send("p", seq, f"v{seq}", 0, None, tick(), outcome, offset, tick(), txn=txn))
    h.assignments.append(Assignment("a", tick(), (0,)))
    for offset, value in ((3, "v2"), (4, "v3")):
        h.reads.append(Read("a", 0, offset, value, tick()))
    h.commits.append(Commit("a", 0, 6, tick(), tick(), True))
    for offset, value in ((3, "v2"), (4, "v3")):
        h.reads.append(Read(FINAL_READER, 0, offset, value, tick()))
    h.final.append(FinalRead(0, 6, True))
    return h


def test_a_clean_transactional_history_passes_despite_its_offset_gaps() -> None:
    verdict = check(transactional_history())
    assert verdict.ok, verdict.examples
    assert (verdict.stats["aborted"], verdict.stats["transactions"]) == (2, 2)


def test_a_read_of_an_aborted_value_is_caught() -> None:
    h = transactional_history()
    h.reads.append(Read("x", 0, 0, "v0", 100.0))
    # (the member, which began at offset 3, now also skipped what x saw at 0)
    assert kinds(h) == {"aborted_read": 1, "skipped": 1}


def test_a_committed_transaction_seen_in_part_is_torn_and_lost() -> None:
    h = transactional_history()
    h.reads = [r for r in h.reads if not (r.consumer == FINAL_READER and r.value == "v3")]
    assert kinds(h) == {"torn_transaction": 1, "lost": 1}


def test_a_transaction_of_unknown_outcome_must_still_be_whole() -> None:
    h = transactional_history()
    h.sends = [replace(s, outcome="failed") if s.txn == 1 else s for s in h.sends]
    assert kinds(h) == {}  # seen whole: it committed
    h.reads = [r for r in h.reads if not (r.consumer == FINAL_READER and r.value == "v3")]
    assert kinds(h) == {"torn_transaction": 1}


def test_a_member_that_jumps_over_a_committed_value_is_still_caught() -> None:
    h = transactional_history()
    h.reads = [r for r in h.reads if not (r.consumer == "a" and r.value == "v2")]
    assert kinds(h) == {"skipped": 1}


@st.composite
def correct_transactional_runs(draw: st.DrawFn) -> History:
    """What a correct cluster gives a transactional producer and a
    read_committed member: every value takes an offset, every transaction
    ends with a marker in each partition it wrote; only committed values are
    read (the member resumes at its commits), and the final read sees them."""
    partitions = draw(st.integers(1, 3))
    tick = Clock()
    h = History(topic="t", partitions=partitions)
    next_offset = [0] * partitions
    readable: list[list[tuple[int, str]]] = [[] for _ in range(partitions)]
    seqs = itertools.count()
    for txn in range(draw(st.integers(0, 8))):
        outcome = draw(st.sampled_from(["ok", "ok", "aborted", "failed"]))
        committed = outcome == "ok" or (outcome == "failed" and draw(st.booleans()))
        touched = set()
        for _ in range(draw(st.integers(1, 3))):
            partition = draw(st.integers(0, partitions - 1))
            seq = next(seqs)
            offset = next_offset[partition]
            next_offset[partition] += 1
            touched.add(partition)
            if committed:
                readable[partition].append((offset, f"v{seq}"))
            h.sends.append(
                Send("p", seq, f"v{seq}", partition, None, tick(), outcome, offset, tick(), txn=txn)
            )
        for partition in touched:  # the markers
            next_offset[partition] += 1
    h.assignments.append(Assignment("m", tick(), tuple(range(partitions))))
    for partition in range(partitions):
        cut = draw(st.integers(0, len(readable[partition])))
        for offset, value in readable[partition][:cut]:
            h.reads.append(Read("m", partition, offset, value, tick()))
        if cut:
            h.commits.append(
                Commit("m", partition, readable[partition][cut - 1][0] + 1, tick(), tick(), True)
            )
    h.assignments.append(Assignment("m", tick(), ()))
    h.assignments.append(Assignment("n", tick(), tuple(range(partitions))))
    for partition in range(partitions):
        for offset, value in readable[partition]:
            h.reads.append(Read(FINAL_READER, partition, offset, value, tick()))
        h.final.append(FinalRead(partition, next_offset[partition], True))
    return h


@settings(max_examples=200, deadline=None)
@given(correct_transactional_runs())
def test_random_correct_transactional_runs_are_clean(history: History) -> None:
    verdict = check(history)
    assert verdict.ok, verdict.examples
