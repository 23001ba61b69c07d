"""``meta.properties``: which cluster and which broker a log dir belongs to.

Kafka writes it into every log dir (ZooKeeper mode: ``version=0``,
``broker.id``, ``cluster.id``) and refuses to start when a dir names another
cluster or another broker id: pointing a broker at a copy of someone else's
data, or joining it to the wrong ZooKeeper, would otherwise serve that data
as its own. Cluster mode only; a single node keeps its cluster id in its
metadata file.
"""

from __future__ import annotations

import os

FILE_NAME = "meta.properties"


class MetaPropertiesError(Exception):
    """A log dir belongs to another cluster or another broker (one line)."""


def read(directory: str) -> dict[str, str] | None:
    """The properties of ``directory``'s meta.properties, None if it has none."""
    path = os.path.join(directory, FILE_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    values = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def stored_broker_id(directories: list[str]) -> int | None:
    """The broker id the log dirs were written by (Kafka reuses it when
    broker.id is unset), or None when none has one."""
    for directory in directories:
        values = read(directory)
        if values and values.get("broker.id", "").lstrip("-").isdigit():
            return int(values["broker.id"])
    return None


def check_and_write(directories: list[str], cluster_id: str, broker_id: int) -> None:
    """Refuse dirs of another cluster or broker; write the file where missing."""
    for directory in directories:
        values = read(directory)
        if values is None:
            _write(directory, cluster_id, broker_id)
            continue
        stored_cluster = values.get("cluster.id")
        if stored_cluster is not None and stored_cluster != cluster_id:
            raise MetaPropertiesError(
                f"the cluster id {cluster_id} does not match the cluster id {stored_cluster} in "
                f"{os.path.join(directory, FILE_NAME)}: this broker is joining the wrong cluster"
            )
        stored_broker = values.get("broker.id")
        if stored_broker is not None and stored_broker != str(broker_id):
            raise MetaPropertiesError(
                f"broker.id {broker_id} does not match the broker.id {stored_broker} in "
                f"{os.path.join(directory, FILE_NAME)}: these logs belong to another broker"
            )


def _write(directory: str, cluster_id: str, broker_id: int) -> None:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, FILE_NAME)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(
            "#Written by moldau in Kafka's ZooKeeper-mode format\n"
            f"version=0\nbroker.id={broker_id}\ncluster.id={cluster_id}\n"
        )
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
