"""The broker settings that shape the group coordinator's behaviour.

Each field is a Kafka broker config under its Kafka name with dots turned into
underscores (``group.initial.rebalance.delay.ms`` is
``group_initial_rebalance_delay_ms``), with Kafka's default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GroupConfig:
    offsets_topic_num_partitions: int = 50
    #: How long the first rebalance of an empty group waits for more members.
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    group_max_size: int = 2**31 - 1
    offsets_retention_minutes: int = 10080
    offsets_retention_check_interval_ms: int = 600000
    offset_metadata_max_bytes: int = 4096
    #: Not a Kafka setting but Kafka's constant: how long a member that joined
    #: and never got its first JoinGroup answer is kept (KIP-394).
    new_member_join_timeout_ms: int = 300000
    #: Not a Kafka setting: how many past rebalances each group remembers.
    rebalance_history_size: int = 20

    @property
    def offsets_retention_ms(self) -> int:
        return self.offsets_retention_minutes * 60_000

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> GroupConfig:
        """Picks the settings named here out of broker properties (Kafka names).

        Properties this class does not know are left to their owners.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for name, raw in props.items():
            field = name.replace(".", "_")
            if field in known:
                values[field] = int(raw)
        return cls(**values)
