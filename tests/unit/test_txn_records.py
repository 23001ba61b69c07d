"""``__transaction_state`` records in Kafka's formats."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moldau.txn.records import (
    DecodeError,
    TxnRecord,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from moldau.txn.state import TxnState


def test_key_is_version_0_and_a_short_string() -> None:
    assert encode_key("tx") == b"\x00\x00\x00\x02tx"
    assert decode_key(b"\x00\x00\x00\x02tx") == "tx"


def test_value_version_0_bytes_are_kafkas() -> None:
    record = TxnRecord(7, 3, 60000, TxnState.ONGOING, frozenset({("t", 1), ("t", 0)}), 11, 10)
    expected = (
        struct.pack(">hqhib", 0, 7, 3, 60000, 1)
        + struct.pack(">i", 1)  # one topic
        + struct.pack(">h", 1)
        + b"t"
        + struct.pack(">iii", 2, 0, 1)
        + struct.pack(">qq", 11, 10)
    )
    assert encode_value(record) == expected
    assert decode_value(expected) == record


def test_empty_state_writes_null_partitions() -> None:
    record = TxnRecord(7, 0, 60000, TxnState.EMPTY, frozenset(), 11, -1)
    data = encode_value(record)
    assert data[2 + 8 + 2 + 4 + 1 : 2 + 8 + 2 + 4 + 1 + 4] == struct.pack(">i", -1)
    assert decode_value(data) == record


def test_flexible_version_1_is_read() -> None:
    data = (
        struct.pack(">hqhib", 1, 7, 3, 60000, 2)
        + bytes([2])  # compact array: one topic
        + bytes([2])
        + b"t"
        + bytes([2])
        + struct.pack(">i", 4)
        + bytes([0])  # topic's tagged fields
        + struct.pack(">qq", 11, 10)
        + bytes([0])  # value's tagged fields
    )
    record = decode_value(data)
    assert record == TxnRecord(7, 3, 60000, TxnState.PREPARE_COMMIT, frozenset({("t", 4)}), 11, 10)


def test_tombstone_and_bad_versions() -> None:
    assert decode_value(None) is None
    with pytest.raises(DecodeError):
        decode_value(struct.pack(">h", 9) + b"\x00" * 40)
    with pytest.raises(DecodeError):
        decode_key(struct.pack(">h", 1) + b"\x00\x00")
    with pytest.raises(DecodeError):
        decode_value(struct.pack(">hqhib", 0, 7, 3, 60000, 99) + b"\x00" * 20)


@given(
    st.integers(0, 2**63 - 1),
    st.integers(-1, 32767),
    st.integers(1, 2**31 - 1),
    st.sampled_from([s for s in TxnState if s is not TxnState.EMPTY]),
    st.frozensets(st.tuples(st.text(min_size=1, max_size=5), st.integers(0, 100)), max_size=6),
    st.integers(-1, 2**62),
    st.integers(-1, 2**62),
)
def test_round_trip(
    pid: int,
    epoch: int,
    timeout: int,
    state: TxnState,
    partitions: frozenset[tuple[str, int]],
    updated: int,
    started: int,
) -> None:
    record = TxnRecord(pid, epoch, timeout, state, partitions, updated, started)
    assert decode_value(encode_value(record)) == record
