"""The error of a broker that cannot join its cluster.

Its own module so that ``moldau broker`` can catch it without importing
cluster mode (ZooKeeper, the controller), which a single node never loads.
"""

from __future__ import annotations


class ClusterJoinError(Exception):
    """The broker cannot join its cluster (one line: ZooKeeper unreachable,
    a log dir of another cluster or broker, a broker id already taken)."""
