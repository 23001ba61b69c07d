"""pytest plugin: a real moldau broker for your tests.

Installed with moldau (entry point ``pytest11``), so any test can ask for the
``moldau_broker`` fixture and get the bootstrap address of a broker that runs
in the test process, on a free port, with its data in a temporary directory.
One broker serves the whole test session; topics keep tests apart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def moldau_broker() -> Iterator[str]:
    """The ``host:port`` of an in-process moldau broker, for the session."""
    from .broker.embedded import Broker

    with Broker() as broker:
        yield broker.bootstrap_servers
