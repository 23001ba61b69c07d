"""How many connections the broker takes: ``max.connections`` and per address.

Kafka's rules: past ``max.connections`` the broker stops accepting, so new
connections wait in the listen backlog until one closes; past
``max.connections.per.ip`` (or the address's entry in
``max.connections.per.ip.overrides``, ``host:count,host:count``) a new
connection is accepted and closed at once. Host names in the overrides are
resolved once, at start.
"""

from __future__ import annotations

import collections
import socket
from dataclasses import dataclass, field

from .config import BrokerConfig, connection_overrides


@dataclass
class ConnectionLimits:
    """The limits, and the connections counted against them per address."""

    max_connections: int
    per_ip: int
    overrides: dict[str, int]
    _open: collections.Counter[str] = field(default_factory=collections.Counter)

    @classmethod
    def from_config(cls, config: BrokerConfig) -> ConnectionLimits:
        return cls(
            int(config.get("max.connections")),
            int(config.get("max.connections.per.ip")),
            parse_overrides(str(config.get("max.connections.per.ip.overrides") or "")),
        )

    def limit_for(self, host: str) -> int:
        return self.overrides.get(host, self.per_ip)

    def admit(self, host: str) -> bool:
        """Count a new connection from ``host``, unless that address is at its limit."""
        if self._open[host] >= self.limit_for(host):
            return False
        self._open[host] += 1
        return True

    def release(self, host: str) -> None:
        self._open[host] -= 1
        if self._open[host] <= 0:
            del self._open[host]


def parse_overrides(text: str) -> dict[str, int]:
    """``host:count,...`` as {address: count}, host names resolved once;
    ConfigError names a bad entry."""
    overrides: dict[str, int] = {}
    for host, count in connection_overrides(text).items():
        try:
            address = socket.gethostbyname(host)
        except OSError:
            address = host
        overrides[address] = count
    return overrides
