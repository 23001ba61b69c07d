"""pytest plugin: a real moldau broker for your tests.

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
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

#: Where the fixture's broker departs from Kafka's defaults, as Kafka's own
#: test harness does: a group forms as soon as its members join, instead of
#: after the 3 s that let a production group gather its members.
TEST_DEFAULTS = {"group.initial.rebalance.delay.ms": "0"}


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
