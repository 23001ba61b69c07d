"""How many partitions a broker may host: the limits CreateTopics and
CreatePartitions check before anything is written.

Three limits, checked in this order:

- Kafka's own cap on one request (``MAX_PARTITIONS_PER_REQUEST``, the
  controller's ``MAX_PARTITIONS_PER_BATCH``): POLICY_VIOLATION for the whole
  request, so 2^31-1 partitions are refused before any work.
- ``max.broker.partitions``, counting the partitions already hosted. Kafka
  has no broker-wide limit (KIP-578 proposed one under this name); moldau
  has one because each partition holds open files and a data dir must
  always be able to start again. Answered with POLICY_VIOLATION too.
- File descriptors: each partition keeps at least one file open (its active
  segment). A creation that would leave less than ``FD_RESERVE_SHARE`` of
  ``RLIMIT_NOFILE`` free for connections, segment rolls and index files is
  refused (POLICY_VIOLATION, saying so) rather than failing half way with
  EMFILE.

``raise_open_file_limit`` lifts the soft limit to the hard one when
``moldau broker`` starts, as Kafka's operations guide advises (ulimit -n).
"""

from __future__ import annotations

import logging
import os
import resource

from ..protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

#: Kafka's cap on the partitions one CreateTopics or CreatePartitions adds.
MAX_PARTITIONS_PER_REQUEST = 10_000
#: Share of the open-file limit kept free when partitions are created.
FD_RESERVE_SHARE = 0.2
#: ...and never less than this many descriptors.
FD_RESERVE_MIN = 128


def check_request_size(partitions: int) -> None:
    """Kafka's per-request cap, over every topic of one request."""
    if partitions > MAX_PARTITIONS_PER_REQUEST:
        raise KafkaError(
            ErrorCode.POLICY_VIOLATION,
            f"Excessively large number of partitions per request ({partitions} > "
            f"{MAX_PARTITIONS_PER_REQUEST}).",
        )


def _usable_files() -> int | None:
    """Open files the process may use for partitions (None: unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return int(soft - max(FD_RESERVE_MIN, int(soft * FD_RESERVE_SHARE)))


def warn_if_files_short() -> None:
    """At start: say so if the logs already use the files kept in reserve
    (segments accumulate), before a roll or a connection hits EMFILE."""
    usable = _usable_files()
    in_use = open_file_count()
    if usable is not None and in_use > usable:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        log.warning(
            "%d files are open of this process's limit of %d (ulimit -n): raise the "
            "limit or remove partitions; creating partitions is refused meanwhile",
            in_use,
            soft,
        )


def check_room(hosted: int, added: int, limit: int, reserved: int = 0) -> None:
    """Refuse ``added`` more partitions if the broker or the process cannot
    take them: ``max.broker.partitions`` (``reserved`` of which are kept for
    a topic the broker will create itself), then open files."""
    if hosted + reserved + added > limit:
        kept = f" and keeps {reserved} for __consumer_offsets" if reserved else ""
        raise KafkaError(
            ErrorCode.POLICY_VIOLATION,
            f"This broker hosts {hosted} partitions{kept}; {added} more would exceed "
            f"max.broker.partitions={limit}.",
        )
    usable = _usable_files()
    if usable is None:
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = open_file_count()
    if in_use + added > usable:
        raise KafkaError(
            ErrorCode.POLICY_VIOLATION,
            f"{added} more partitions need {added} more open files; {in_use} of the "
            f"process's limit of {soft} (ulimit -n) are in use and "
            f"{soft - usable} are kept free. Raise the limit or delete topics.",
        )


def open_file_count() -> int:
    """File descriptors this process has open (Linux's /proc; elsewhere 0)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def raise_open_file_limit() -> None:
    """Lift the soft open-file limit to the hard limit, logging the change."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an unlimited RLIMIT_NOFILE; its usual ceiling is 2^20.
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open file limit from %d to %d: %s", soft, target, exc)
        return
    log.info("raised the open file limit (ulimit -n) from %d to %d", soft, target)
