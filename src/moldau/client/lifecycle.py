"""The life cycle that producer, consumer and admin share.

Each runs on a :class:`Cluster` that is either its own (made from a bootstrap
string, closed with the client) or passed in and shared with other clients
(left open, since others still use it). Keeping that rule in one place means a
client cannot close a cluster it was lent, nor leak one it made.
"""

from __future__ import annotations

from typing import Self

from .cluster import Cluster

__all__ = ["ClusterClient"]


class ClusterClient:
    """Base of the clients: owns or borrows ``cluster``, is an async context
    manager, reaches the cluster on ``start``.

    Subclasses extend ``start`` and ``close`` (calling these) with their own
    background work.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        cluster: Cluster | None,
        *,
        client_id: str,
        request_timeout_ms: int,
        retry_backoff_ms: int = 100,
    ) -> None:
        self._own_cluster = cluster is None
        self.cluster = cluster or Cluster(
            bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Reach the cluster, so that a wrong address fails here."""
        await self.cluster.refresh([])

    async def close(self) -> None:
        """Close the cluster if this client made it."""
        if self._own_cluster:
            await self.cluster.close()
