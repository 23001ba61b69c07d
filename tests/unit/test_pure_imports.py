"""The pure cores import neither asyncio nor kazoo (nor uvloop).

The line between core and shell (DESIGN.md, "Pure cores, thin I/O shell")
holds only if something checks it: each pure module is imported in a fresh
interpreter where importing asyncio, kazoo or uvloop raises, so a direct or
an indirect import fails here. The shells (``cluster/zk/client.py``,
``store.py``) must fail the same check, which shows the blocker works.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: Whole packages that are pure, and single pure modules in mixed packages.
PURE_PACKAGES = (
    "moldau/cluster/controller",
    "moldau/group",
    "moldau/log",
    "moldau/replication",
    "moldau/txn",
)
PURE_MODULES = (
    "moldau/cluster/zk/paths.py",
    "moldau/cluster/placement.py",
    "moldau/cluster/balance.py",
    "moldau/cluster/wire.py",
    "moldau/cluster/metadata_cache.py",
    "moldau/broker/fetch_sessions.py",
)
SHELLS = ("moldau.cluster.zk.client", "moldau.cluster.zk.store")

BLOCKER = """
import importlib.abc, json, sys, traceback

BLOCKED = ("asyncio", "kazoo", "uvloop")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"pure module imported {name}")
        return None

for name in BLOCKED:
    sys.modules.pop(name, None)
sys.meta_path.insert(0, Block())
failures = {}
for module in json.loads(sys.argv[1]):
    try:
        __import__(module)
    except ImportError as exc:
        failures[module] = str(exc)
print(json.dumps(failures))
"""


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def pure_modules() -> list[str]:
    files = [SRC / m for m in PURE_MODULES]
    for package in PURE_PACKAGES:
        files.extend(sorted((SRC / package).rglob("*.py")))
    return [_module_name(f) for f in files]


def import_blocked(modules: list[str]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER, json.dumps(modules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    failures: dict[str, str] = json.loads(done.stdout)
    return failures


def test_pure_modules_import_neither_asyncio_nor_kazoo() -> None:
    modules = pure_modules()
    assert "moldau.cluster.zk.paths" in modules and "moldau.group.coordinator" in modules
    controller = "moldau.cluster.controller"
    assert {
        f"{controller}.{m}"
        for m in (
            "context",
            "events",
            "commands",
            "controller",
            "batch",
            "deletion",
            "alter_partition",
        )
    } <= set(modules)
    assert import_blocked(modules) == {}


def test_the_blocker_catches_the_shells() -> None:
    failures = import_blocked(list(SHELLS))
    assert set(failures) == set(SHELLS)
    assert all("pure module imported" in why for why in failures.values())


def test_a_single_node_loads_no_cluster_code() -> None:
    """``moldau broker`` without zookeeper.connect imports neither kazoo nor the
    controller, the replica fetchers, the client, nor (until a client asks
    for it) the transaction coordinator: they cost start-up time a single
    node never needs back."""
    code = (
        "import json, sys\n"
        "import moldau.cli.main, moldau.broker.run, moldau.broker.server\n"
        "moldau.cli.main.build_parser()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    for module in (
        "kazoo",
        "moldau.broker.cluster_node",
        "moldau.cluster.controller_shell",
        "moldau.cluster.controller.controller",
        "moldau.cluster.metadata_cache",
        "moldau.broker.replica_fetcher",
        "moldau.broker.isr_updates",
        "moldau.client.producer",
        "moldau.client.consumer",
        "moldau.client.connection",
        "moldau.cluster.zk.paths",
        "moldau.broker.dynamic_config",
        "moldau.cli.cluster_rebalance",
        "moldau.broker.transactions",
        "moldau.txn.coordinator",
    ):
        assert module not in loaded, f"{module} is loaded by a single node"
