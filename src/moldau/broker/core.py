"""The broker's composition root: the parts request handlers reach.

Request handlers are thin adapters over the parts built here, each with one
job: ``topics`` (topic admin, ``topics.py``), ``replicas`` (the hosted
partitions, ``replica_manager.py``), ``purgatory`` (fetches waiting for
data, ``purgatory.py``), ``producer_ids`` (``producer_ids.py``) and
``groups`` (the group coordinator's shell, ``groups.py``) and
``transactions`` (the transaction coordinator's, ``transactions.py``). This class only
builds and wires them, so that none of them needs another's module beyond
what it calls, and the handlers find them all through ``context.core``.

The two modes differ in three parts, given by the server: where metadata is
read (a single node's own file, or the cluster's ``MetadataCache``), who
writes topics (``TopicAdmin``, or ``ClusterTopicAdmin`` through ZooKeeper),
and where producer ids come from; and in cluster mode ``cluster`` is the
broker's link to ZooKeeper and the controller.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..cluster.metadata import MetadataStore
from ..log.manager import LogManager
from .config import BrokerConfig
from .groups import GroupService
from .internal_topics import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC
from .producer_ids import Allocator, ProducerIdBlocks
from .purgatory import FetchPurgatory
from .replica_manager import ReplicaManager
from .topics import TopicAdminApi

if TYPE_CHECKING:
    from .cluster_node import ClusterNode
    from .transactions import TransactionService

#: Called after a transaction marker is appended as leader, with (topic,
#: partition, producer id, producer epoch, committed).
TxnMarkerListener = Callable[[str, int, int, int, bool], None]

#: Builds the mode's topic admin over the hosted partitions.
TopicAdminFactory = Callable[[ReplicaManager], TopicAdminApi]


class BrokerCore:
    """Everything a request handler may need, owned by one broker."""

    def __init__(
        self,
        config: BrokerConfig,
        metadata: MetadataStore,
        logs: LogManager,
        *,
        topic_admin: TopicAdminFactory,
        producer_id_blocks: Allocator,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.logs = logs
        self.broker_id = config.broker_id
        self.clock = clock
        self.purgatory = FetchPurgatory()
        self.replicas = ReplicaManager(
            self.broker_id, config, metadata, logs, on_change=self.purgatory.wake
        )
        self.topics = topic_admin(self.replicas)
        self.producer_ids = ProducerIdBlocks(producer_id_blocks)
        #: The consumer group coordinator's shell, set by ``start_groups``.
        self.groups: GroupService | None = None
        #: Cluster mode: the link to ZooKeeper and the controller.
        self.cluster: ClusterNode | None = None
        #: The transaction coordinator's shell, set by ``start_transactions``;
        #: Produce asks it (``txn_verifier.TransactionVerifier``) before a
        #: transactional batch opens a transaction on a partition (KIP-890).
        #: None: not started, batches are appended unverified.
        self.transactions: TransactionService | None = None
        #: Told of every marker appended here as leader (WriteTxnMarkers), so
        #: the group coordinator can materialise transactional offset commits.
        self.txn_marker_listeners: list[TxnMarkerListener] = []

    def start_groups(self) -> GroupService:
        """Start the group coordinator once the partitions are hosted: it
        creates ``__consumer_offsets`` on first use and forgets the offsets
        of deleted topics."""
        groups = GroupService(self.config, self.clock, self.metadata, self.replicas, self.topics)
        self.topics.internal_creators[OFFSETS_TOPIC] = groups.ensure_topic
        self.topics.deletion_listeners.append(groups.topic_deleted)
        self.replicas.leadership_listeners.append(groups.leadership_changed)
        # A transaction's marker in an offsets partition applies (or drops)
        # the offsets it committed there.
        self.txn_marker_listeners.append(groups.transaction_completed)
        self.groups = groups
        groups.load()
        return groups

    def needs_transactions_at_start(self) -> bool:
        return self.cluster is not None or self.metadata.topic(TRANSACTION_STATE_TOPIC) is not None

    def start_transactions(self) -> TransactionService:
        """Start the transaction coordinator once the partitions are hosted: it
        creates ``__transaction_state`` on first use and writes markers into
        the partitions this broker leads with the WriteTxnMarkers handler's
        function.

        A cluster broker starts it at once (it may be made leader of a
        ``__transaction_state`` partition any time), and so does a single node
        that has that topic; one that has none starts it with the first
        request that needs it, so that it starts as fast as before
        transactions (``needs_transactions_at_start``)."""
        from .handlers.write_txn_markers import write_txn_markers
        from .transactions import TransactionService

        service = TransactionService(
            self.config,
            self.clock,
            self.metadata,
            self.replicas,
            self.topics,
            self.producer_ids,
            self.purgatory,
            functools.partial(write_txn_markers, self),
        )
        self.topics.internal_creators[TRANSACTION_STATE_TOPIC] = service.ensure_topic
        self.replicas.leadership_listeners.append(service.leadership_changed)
        self.transactions = service
        service.load()
        return service
