"""pytest plugin: a real moldau broker, or a real moldau cluster, for your tests.

Installed with moldau (entry point ``pytest11``), so any test can ask for the
``moldau_broker`` fixture and get the bootstrap address of a broker that runs
in the test process, on a free port, with its data in a temporary directory.
One broker serves the whole test session; topics keep tests apart.

Its configuration comes from the ``moldau_broker_config`` fixture: Kafka's
broker keys as strings. Override that fixture (session-scoped) in a
``conftest.py`` to change them; asking for the original keeps the defaults::

    @pytest.fixture(scope="session")
    def moldau_broker_config(moldau_broker_config):
        return {**moldau_broker_config, "num.partitions": "3"}

A cluster, for tests that ask for it: ``moldau_cluster`` yields a
``moldau.cluster.local.LocalCluster``, a ZooKeeper and
``moldau_cluster_size`` (default 3) ``moldau broker`` processes on free
ports, with ``bootstrap_servers``, ``broker_ids``, ``kill(broker_id,
signal)``, ``start_broker(broker_id)``, ``controller_id()`` and
``wait_until...`` helpers. It needs Debian's ``zookeeper`` package (Java);
nothing of it starts unless a test asks. One ZooKeeper serves the session
(each cluster has a chroot of its own) and one cluster serves a test module:
starting it takes a few seconds. Before each test any broker an earlier test
killed, stopped or paused is brought back (a killed broker's registration
must first expire: up to the session timeout); topics keep tests apart.
Its brokers' config is ``moldau_cluster_config``: the defaults above plus a
ZooKeeper session timeout of 6 s instead of Kafka's 18 s, so that a killed
broker leaves the cluster within a test. Override either fixture, in a
``conftest.py`` or in one test module::

    @pytest.fixture(scope="module")
    def moldau_cluster_size():
        return 5
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .cluster.local import LocalCluster
    from .cluster.local_zookeeper import ZooKeeperServer

#: Where the fixture's broker departs from Kafka's defaults, as Kafka's own
#: test harness does: a group forms as soon as its members join, instead of
#: after the 3 s that let a production group gather its members.
TEST_DEFAULTS = {"group.initial.rebalance.delay.ms": "0"}

#: The cluster's brokers: the same, and a killed broker's session (so its
#: registration and leadership) ends after 6 s rather than Kafka's 18 s.
CLUSTER_TEST_DEFAULTS = {**TEST_DEFAULTS, "zookeeper.session.timeout.ms": "6000"}


@pytest.fixture(scope="session")
def moldau_broker_config() -> dict[str, str]:
    """Kafka broker config (key -> value) for ``moldau_broker``; override to change."""
    return dict(TEST_DEFAULTS)


@pytest.fixture(scope="session")
def moldau_broker(moldau_broker_config: dict[str, str]) -> Iterator[str]:
    """The ``host:port`` of an in-process moldau broker, for the session."""
    from .broker.embedded import Broker

    with Broker(config=moldau_broker_config) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def moldau_cluster_size() -> int:
    """How many brokers ``moldau_cluster`` runs; override to change."""
    return 3


@pytest.fixture(scope="session")
def moldau_cluster_config() -> dict[str, str]:
    """Kafka broker config for every broker of ``moldau_cluster``; override to change."""
    return dict(CLUSTER_TEST_DEFAULTS)


@pytest.fixture(scope="session")
def moldau_zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """The ZooKeeper server the clusters of this session share."""
    from .cluster.local_zookeeper import ZooKeeperServer

    server = ZooKeeperServer(tmp_path_factory.mktemp("moldau-zookeeper"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def moldau_cluster_shared(
    moldau_zookeeper: ZooKeeperServer,
    moldau_cluster_size: int,
    moldau_cluster_config: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalCluster]:
    """The module's cluster as it is; tests ask for ``moldau_cluster``."""
    from .cluster.local import LocalCluster

    with LocalCluster(
        tmp_path_factory.mktemp("moldau-cluster"),
        moldau_cluster_size,
        zookeeper_connect=f"{moldau_zookeeper.connect}/moldau-{uuid.uuid4().hex[:12]}",
        broker_config=moldau_cluster_config,
    ) as cluster:
        yield cluster


@pytest.fixture
def moldau_cluster(moldau_cluster_shared: LocalCluster) -> LocalCluster:
    """A local cluster with every broker up (see the module docstring)."""
    moldau_cluster_shared.restore()
    return moldau_cluster_shared
