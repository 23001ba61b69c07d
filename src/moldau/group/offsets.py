"""Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete and their expiry.

Who may commit: a member of the current generation (a stale generation or an
unknown member is refused, so a consumer that lost its partitions in a
rebalance cannot overwrite the new owner's progress), or anyone with
generation -1 while the group has no members, which is how consumers that
assign partitions themselves ("simple" or standalone consumers) store
offsets.

When offsets expire (offsets.retention.minutes, Kafka 2.1+ semantics): those
of a group with no members once the retention has passed since the group
became Empty; in an active consumer group only those of topics no member
subscribes to, counted from their commit; those of a standalone group
counted from their commit. An Empty group left without offsets is deleted.
"""

from __future__ import annotations

from moldau.group import consumer_protocol, errors
from moldau.group.model import Group, GroupState, TopicPartition
from moldau.group.persistence import group_tombstone, offset_record, offset_tombstone
from moldau.group.records import OffsetCommitValue
from moldau.group.results import (
    FetchedOffset,
    OffsetCommitPartition,
    OffsetCommitResult,
    OffsetDeleteResult,
    OffsetFetchResult,
    PartitionResult,
)
from moldau.group.runtime import Record, Runtime, TxnProducer


class Offsets:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def commit(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        partitions: list[OffsetCommitPartition],
    ) -> OffsetCommitResult:
        group = self.rt.groups.get(group_id)
        if group is None:
            # Only a standalone consumer may create a group by committing; a
            # member of a generation the coordinator does not know is stale.
            if generation_id >= 0:
                return refused_commit(partitions, errors.ILLEGAL_GENERATION)
            group = self.rt.groups[group_id] = self.rt.new_group(group_id)
        elif not (generation_id < 0 and group.state is GroupState.EMPTY):
            if group.state is GroupState.COMPLETING_REBALANCE:
                # The member knows the new generation but has no assignment
                # yet; Kafka clients retry after the rebalance.
                return refused_commit(partitions, errors.REBALANCE_IN_PROGRESS)
            error = _check_member(group, member_id, group_instance_id, generation_id)
            if error:
                return refused_commit(partitions, error)
            self.rt.schedule_session(group, group.members[member_id])
        return self._store(group, partitions)

    def commit_in_transaction(
        self,
        group_id: str,
        producer: TxnProducer,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        partitions: list[OffsetCommitPartition],
    ) -> OffsetCommitResult:
        """TxnOffsetCommit: offsets written inside the producer's transaction,
        the group's once its commit marker arrives (:meth:`complete_transaction`).

        As Kafka's: a commit naming a member or generation (v3+, KIP-447) is
        checked like a member's plain commit, but a rebalance in progress does
        not refuse it; one naming neither (older clients) needs no member,
        even in a group that has some. A group it names that does not exist
        is created, as a standalone consumer's commit creates one.
        """
        group = self.rt.groups.get(group_id) or self.rt.new_group(group_id)
        if generation_id >= 0 or member_id or group_instance_id is not None:
            error = _check_member(group, member_id, group_instance_id, generation_id)
            if error:
                return refused_commit(partitions, error)
        self.rt.groups.setdefault(group_id, group)
        return self._store(group, partitions, producer)

    def complete_transaction(self, groups: list[Group], producer_id: int, committed: bool) -> None:
        """The producer's transaction ended with its marker in the groups'
        offsets partition: its offsets there apply, or are dropped."""
        for group in groups:
            group.complete_txn(producer_id, committed)

    def _store(
        self,
        group: Group,
        partitions: list[OffsetCommitPartition],
        producer: TxnProducer | None = None,
    ) -> OffsetCommitResult:
        now = self.rt.clock()
        limit = self.rt.config.offset_metadata_max_bytes
        group_id = group.group_id
        results = []
        records: list[Record] = []
        committed: dict[TopicPartition, OffsetCommitValue] = {}
        for p in partitions:
            metadata = p.metadata or ""
            if len(metadata.encode()) > limit:
                results.append(
                    PartitionResult(p.topic, p.partition, errors.OFFSET_METADATA_TOO_LARGE)
                )
                continue
            tp = (p.topic, p.partition)
            when = now if p.commit_timestamp == -1 else p.commit_timestamp
            committed[tp] = OffsetCommitValue(p.offset, p.leader_epoch, metadata, when)
            records.append(offset_record(group_id, tp, committed[tp]))
            results.append(PartitionResult(p.topic, p.partition, errors.NONE))
        self.rt.write(group_id, records, producer)
        for tp, value in committed.items():
            if producer is None:
                group.set_offset(tp, value)
            else:
                group.stage_txn_offset(producer.producer_id, tp, value)
        return OffsetCommitResult(errors.NONE, tuple(results))

    def fetch(
        self,
        group_id: str,
        topics: list[tuple[str, list[int]]] | None,
        require_stable: bool = False,
    ) -> OffsetFetchResult:
        """The committed offsets of the given partitions, or of all (``topics``
        None). With ``require_stable`` (KIP-447), a partition with an offset
        committed in a transaction still open is UNSTABLE_OFFSET_COMMIT: the
        client asks again once the transaction has ended."""
        group = self.rt.groups.get(group_id)
        offsets = group.offsets if group is not None else {}
        if topics is None:
            wanted = sorted(offsets)
        else:
            wanted = [(topic, p) for topic, partitions in topics for p in partitions]
        found = []
        for topic, p in wanted:
            value = offsets.get((topic, p))
            if require_stable and group is not None and group.has_pending_txn_offset((topic, p)):
                found.append(FetchedOffset(topic, p, error_code=errors.UNSTABLE_OFFSET_COMMIT))
            elif value is None:
                found.append(FetchedOffset(topic, p))
            else:
                found.append(
                    FetchedOffset(topic, p, value.offset, value.leader_epoch, value.metadata)
                )
        return OffsetFetchResult(errors.NONE, tuple(found))

    def delete(self, group_id: str, partitions: list[TopicPartition]) -> OffsetDeleteResult:
        """Deletes offsets, except those of topics an active consumer group reads."""
        group = self.rt.groups.get(group_id)
        if group is None:
            return OffsetDeleteResult(errors.GROUP_ID_NOT_FOUND)
        in_use: set[str] | None = set()
        if group.state is not GroupState.EMPTY:
            if group.protocol_type != consumer_protocol.PROTOCOL_TYPE:
                return OffsetDeleteResult(errors.NON_EMPTY_GROUP)
            in_use = group.subscribed_topics()  # None: unreadable, assume all in use
        results = []
        deleted: dict[TopicPartition, None] = {}
        for tp in partitions:
            if in_use is None or tp[0] in in_use:
                results.append(PartitionResult(*tp, errors.GROUP_SUBSCRIBED_TO_TOPIC))
                continue
            if tp in group.offsets:
                deleted[tp] = None
            results.append(PartitionResult(*tp, errors.NONE))
        self.rt.write(group_id, [offset_tombstone(group_id, tp) for tp in deleted])
        for tp in deleted:
            del group.offsets[tp]
        return OffsetDeleteResult(errors.NONE, tuple(results))

    def expire(self, groups: list[Group]) -> None:
        """Removes expired offsets of ``groups``, and the Empty groups left without any."""
        now = self.rt.clock()
        for group in groups:
            expired = [
                tp for tp, value in group.offsets.items() if self._expired(group, value, tp, now)
            ]
            self._drop(group, expired)

    def forget_topic(self, groups: list[Group], topic: str) -> None:
        """A topic was deleted: its offsets go, as in Kafka, so that a topic
        created again under the name is read from where auto.offset.reset
        says, not from positions in a log that no longer exists."""
        for group in groups:
            self._drop(group, [tp for tp in group.offsets if tp[0] == topic])

    def _drop(self, group: Group, partitions: list[TopicPartition]) -> None:
        """Tombstones for ``partitions``; an Empty group left without offsets goes too."""
        records = [offset_tombstone(group.group_id, tp) for tp in partitions]
        for tp in partitions:
            del group.offsets[tp]
        gone = (
            group.state is GroupState.EMPTY and not group.has_offsets and not group.pending_members
        )
        if gone:
            records.append(group_tombstone(group.group_id))
        self.rt.write(group.group_id, records)
        if gone:
            self.rt.drop_group(group)

    def _expired(
        self, group: Group, value: OffsetCommitValue, tp: TopicPartition, now: int
    ) -> bool:
        if value.expire_timestamp >= 0:  # an explicit retention, from Kafka's old requests
            return now >= value.expire_timestamp
        retention = self.rt.config.offsets_retention_ms
        if group.protocol_type is None:  # standalone: each offset from its commit
            return now - value.commit_timestamp >= retention
        if group.state is GroupState.EMPTY:  # from when the last member left
            since = group.state_timestamp
            return now - (value.commit_timestamp if since is None else since) >= retention
        if group.state is GroupState.STABLE:  # only topics nobody consumes any more
            in_use = group.subscribed_topics()
            if in_use is not None and tp[0] not in in_use:
                return now - value.commit_timestamp >= retention
        return False


def _check_member(
    group: Group, member_id: str, group_instance_id: str | None, generation_id: int
) -> int:
    """A committer that names a member must be one, of this generation."""
    error = group.validate_member(member_id, group_instance_id)
    if not error and generation_id != group.generation:
        error = errors.ILLEGAL_GENERATION
    return error


def refused_commit(partitions: list[OffsetCommitPartition], error: int) -> OffsetCommitResult:
    """Every partition of a commit answered ``error``."""
    return OffsetCommitResult(
        error, tuple(PartitionResult(p.topic, p.partition, error) for p in partitions)
    )
