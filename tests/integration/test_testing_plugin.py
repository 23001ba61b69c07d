"""The ``moldau_broker`` pytest fixture, as a user's test suite sees it: run
by pytester in a pytest subprocess, with the plugin loaded from its entry
point."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

#: An inner test that prints the broker configs it is asked about.
INNER_TEST = """
import asyncio

from moldau.client.admin import Admin, ConfigResourceType


def broker_configs(bootstrap):
    async def read():
        async with Admin(bootstrap) as admin:
            return await admin.describe_configs(ConfigResourceType.BROKER, "0")

    return {e.name: e.value for e in asyncio.run(read())}


def test_configs(moldau_broker):
    configs = broker_configs(moldau_broker)
    print("DELAY", configs["group.initial.rebalance.delay.ms"])
    print("PARTITIONS", configs["num.partitions"])
"""


def test_the_default_broker_forms_groups_without_the_initial_delay(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_inner=INNER_TEST)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*DELAY 0*", "*PARTITIONS 1*"])


def test_a_conftest_overrides_the_config_and_keeps_the_defaults(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
import pytest


@pytest.fixture(scope="session")
def moldau_broker_config(moldau_broker_config):
    return {**moldau_broker_config, "num.partitions": "3"}
"""
    )
    pytester.makepyfile(test_inner=INNER_TEST)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*DELAY 0*", "*PARTITIONS 3*"])
