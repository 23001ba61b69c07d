"""AlterPartition through the controller: a leader's ISR changes, checked and
written conditionally, answered with the state written (Kafka 3.9's
processAlterPartition rules; see ``moldau.cluster.controller.alter_partition``)."""

from __future__ import annotations

from moldau.cluster.controller.alter_partition import AlterPartitionItem
from moldau.cluster.controller.commands import (
    AlterPartitionReply,
    AlterPartitionResult,
    UpdateMetadata,
    UpdatePartitionState,
)
from moldau.cluster.controller.events import (
    AlterPartition,
    ControlledShutdown,
    UncleanLeaderElectionEnable,
)
from moldau.cluster.zk.paths import RECOVERED, RECOVERING
from moldau.protocol.errors import ErrorCode
from support.controller_harness import Harness
from support.fake_zk_view import FakeZkView

TP = ("t", 0)


def cluster(replicas: list[int], brokers: int = 3) -> Harness:
    h = Harness(FakeZkView(), range(1, brokers + 1))
    h.elect()
    h.create_topic("t", [replicas])
    return h


def alter(
    h: Harness,
    isr: tuple[int, ...],
    *,
    broker: int | None = None,
    leader_epoch: int | None = None,
    partition_epoch: int | None = None,
    recovery: int = RECOVERED,
    broker_epoch: int | None = None,
) -> AlterPartitionReply:
    state = h.view.state(TP)
    assert state is not None
    broker = state.leader if broker is None else broker
    item = AlterPartitionItem(
        *TP,
        state.leader_epoch if leader_epoch is None else leader_epoch,
        isr,
        state.zk_version if partition_epoch is None else partition_epoch,
        recovery,
    )
    epoch = h.up[broker].epoch if broker_epoch is None else broker_epoch
    h.feed(AlterPartition(broker, epoch, (item,)))
    reply = h.replies[-1]
    assert isinstance(reply, AlterPartitionReply)
    return reply


def only(reply: AlterPartitionReply) -> AlterPartitionResult:
    assert reply.error is ErrorCode.NONE
    (result,) = reply.partitions
    return result


def test_shrink_keeps_the_leader_epoch_and_bumps_the_partition_epoch() -> None:
    h = cluster([1, 2, 3])
    result = only(alter(h, (1, 2)))
    assert (result.error, result.leader, result.leader_epoch, result.isr) == (
        ErrorCode.NONE,
        1,
        0,
        (1, 2),
    )
    state = h.view.state(TP)
    assert state is not None and (state.isr, state.leader_epoch, state.zk_version) == ((1, 2), 0, 1)
    assert result.partition_epoch == 1
    assert all(b.metadata[TP].isr == (1, 2) for b in h.brokers.values())


def test_a_retry_of_what_is_already_written_succeeds_without_a_write() -> None:
    h = cluster([1, 2, 3])
    alter(h, (1, 2))
    before = len([c for c in h.commands if isinstance(c, UpdatePartitionState)])
    result = only(alter(h, (1, 2), partition_epoch=0))
    assert result.error is ErrorCode.NONE and result.partition_epoch == 1
    assert len([c for c in h.commands if isinstance(c, UpdatePartitionState)]) == before


def test_expand_with_a_live_follower() -> None:
    h = cluster([1, 2, 3])
    alter(h, (1,))
    assert only(alter(h, (1, 3))).isr == (1, 3)


def test_fencing_and_version_errors() -> None:
    h = cluster([1, 2, 3])
    assert only(alter(h, (1, 2), leader_epoch=1)).error is ErrorCode.NOT_CONTROLLER
    assert only(alter(h, (1, 2), partition_epoch=5)).error is ErrorCode.NOT_CONTROLLER
    alter(h, (1, 2))
    assert only(alter(h, (1,), partition_epoch=0)).error is ErrorCode.INVALID_UPDATE_VERSION
    h.stop(1)  # broker 2 leads in epoch 1
    h.start(1)
    stale = alter(h, (2, 1), leader_epoch=0, partition_epoch=0)
    assert only(stale).error is ErrorCode.FENCED_LEADER_EPOCH
    assert only(alter(h, (2, 1), broker=1)).error is ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_ineligible_replicas_dead_shutting_down_or_not_assigned() -> None:
    h = cluster([1, 2, 3], brokers=4)
    alter(h, (1,))
    h.stop(2)
    assert only(alter(h, (1, 2))).error is ErrorCode.INELIGIBLE_REPLICA
    assert only(alter(h, (1, 4))).error is ErrorCode.INELIGIBLE_REPLICA
    h.feed(ControlledShutdown(3, h.up[3].epoch))
    assert only(alter(h, (1, 3))).error is ErrorCode.INELIGIBLE_REPLICA
    assert only(alter(h, (2, 3))).error is ErrorCode.INVALID_REQUEST  # without the leader


def test_stale_broker_epoch_fails_the_whole_request() -> None:
    h = cluster([1, 2, 3])
    reply = alter(h, (1, 2), broker_epoch=h.up[1].epoch - 1)
    assert reply.error is ErrorCode.STALE_BROKER_EPOCH and reply.partitions == ()
    state = h.view.state(TP)
    assert state is not None and state.isr == (1, 2, 3)


def test_a_lost_write_answers_invalid_update_version_and_re_reads() -> None:
    h = cluster([1, 2, 3])
    h.view.leader_sets_isr(TP, (1, 3))  # written behind the controller's back
    result = only(alter(h, (1, 2), partition_epoch=0))  # as the controller still believes
    assert result.error is ErrorCode.INVALID_UPDATE_VERSION
    state = h.view.state(TP)
    assert state is not None and state.isr == (1, 3)
    ctx = h.controller.context
    assert ctx is not None and ctx.leadership[TP].zk_version == 1


def test_leader_recovery_after_an_unclean_election() -> None:
    h = cluster([1, 2], brokers=2)
    alter(h, (1,))
    h.stop(1)
    h.feed(UncleanLeaderElectionEnable("t", True))
    state = h.view.state(TP)
    assert state is not None and state.leader == 2 and state.leader_recovery_state == RECOVERING
    h.start(1)
    assert only(alter(h, (2, 1), recovery=RECOVERING)).error is ErrorCode.INVALID_REQUEST
    assert only(alter(h, (2,), recovery=RECOVERED)).error is ErrorCode.NONE
    assert only(alter(h, (2,), recovery=RECOVERING)).error is ErrorCode.INVALID_REQUEST
    assert only(alter(h, (2, 1))).isr == (2, 1)


def test_every_broker_hears_of_the_change() -> None:
    h = cluster([1, 2, 3])
    mark = len(h.commands)
    alter(h, (1, 2))
    assert [c.broker_id for c in h.commands[mark:] if isinstance(c, UpdateMetadata)] == [1, 2, 3]
