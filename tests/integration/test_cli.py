"""The ``moldau`` command as a user runs it, against a broker subprocess.

Commands run as subprocesses; their stdout, stderr and exit status are
checked. Placement of keyed records is checked against independent
implementations (kafka-python's murmur2, librdkafka's partitioners), not
against moldau's own partitioner.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import (
    FAST_GROUPS,
    MOLDAU,
    BrokerProcess,
    Rec,
    confluent_produce,
    free_port,
    wait_for,
)

pytest.importorskip("moldau.broker.run", reason="moldau broker is not there yet")

PARTITIONS = 4
KEYS = [f"key-{i}" for i in range(60)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the whole module: each test uses its own topics."""
    process = BrokerProcess(tmp_path_factory.mktemp("cli") / "data")
    try:
        yield process.start()
    finally:
        process.kill()


@pytest.fixture(scope="module")
def strict_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker that does not create topics on first use."""
    process = BrokerProcess(
        tmp_path_factory.mktemp("cli-strict") / "data", auto_create_topics_enable="false"
    )
    try:
        yield process.start()
    finally:
        process.kill()


def moldau(
    broker: BrokerProcess | None, *args: str, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    extra = ["--bootstrap-server", broker.bootstrap] if broker is not None else []
    return subprocess.run(
        [MOLDAU, *args, *extra],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(broker: BrokerProcess | None, *args: str, stdin: str | None = None) -> str:
    done = moldau(broker, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def fails(broker: BrokerProcess | None, *args: str, stdin: str | None = None) -> str:
    """The command failed with exactly one line on stderr; that line."""
    done = moldau(broker, *args, stdin=stdin)
    assert done.returncode != 0, done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def consume_keyed(broker: BrokerProcess, topic: str, partition: int, count: int) -> list[str]:
    """``key<TAB>value`` lines of one partition from the beginning."""
    out = ok(
        broker,
        "consume",
        topic,
        "--partition",
        str(partition),
        "--from-beginning",
        "--print-key",
        "--max-messages",
        str(count),
        "--timeout-ms",
        "10000",
    )
    lines = out.splitlines()
    assert len(lines) == count, f"partition {partition}: {lines}"
    return lines


# --- topics ----------------------------------------------------------------


def test_topic_lifecycle(broker: BrokerProcess) -> None:
    out = ok(
        broker, "topics", "create", "life", "--partitions", "3", "--config", "retention.ms=60000"
    )
    assert out == "Created topic life.\n"
    assert "life" in ok(broker, "topics", "list").splitlines()

    described = ok(broker, "topics", "describe", "life").splitlines()
    head = described[0].split("\t")
    assert head[0] == "Topic: life"
    assert "PartitionCount: 3" in head and "ReplicationFactor: 1" in head
    assert "retention.ms=60000" in described[0]
    assert [line.split("\t")[2] for line in described[1:]] == [
        "Partition: 0",
        "Partition: 1",
        "Partition: 2",
    ]
    assert all("Leader: " in line and "Isr: " in line for line in described[1:])

    line = fails(broker, "topics", "create", "life")
    assert line == "moldau: topic 'life' already exists (TOPIC_ALREADY_EXISTS)"
    assert ok(broker, "topics", "create", "life", "--if-not-exists") == (
        "Topic life already exists.\n"
    )

    assert ok(broker, "topics", "alter", "life", "--partitions", "5") == (
        "Topic life now has 5 partitions.\n"
    )
    assert "PartitionCount: 5" in ok(broker, "topics", "describe", "life").splitlines()[0]
    assert fails(broker, "topics", "alter", "life", "--partitions", "2").endswith(
        "(INVALID_PARTITIONS)"
    )

    assert ok(broker, "topics", "delete", "life") == "Deleted topic life.\n"
    assert "life" not in ok(broker, "topics", "list").splitlines()
    line = fails(broker, "topics", "delete", "life")
    assert line == "moldau: topic 'life' does not exist (UNKNOWN_TOPIC_OR_PARTITION)"
    assert ok(broker, "topics", "delete", "life", "--if-exists") == ("Topic life does not exist.\n")


def test_describe_all_and_missing(broker: BrokerProcess) -> None:
    ok(broker, "topics", "create", "desc-a", "--partitions", "1")
    ok(broker, "topics", "create", "desc-b", "--partitions", "2")
    heads = [
        line.split("\t")[0]
        for line in ok(broker, "topics", "describe").splitlines()
        if line.startswith("Topic:")
    ]
    assert {"Topic: desc-a", "Topic: desc-b"} <= set(heads)
    line = fails(broker, "topics", "describe", "desc-none")
    assert line == "moldau: topic 'desc-none' does not exist (UNKNOWN_TOPIC_OR_PARTITION)"


def test_invalid_topic_create(broker: BrokerProcess) -> None:
    assert fails(broker, "topics", "create", "bad-parts", "--partitions", "0").startswith(
        "moldau: topic 'bad-parts'"
    )
    assert fails(broker, "topics", "create", "bad/name", "--partitions", "1").endswith(
        "(INVALID_TOPIC_EXCEPTION)"
    )


# --- produce and consume -------------------------------------------------------


def kafka_python_murmur2_partition(key: str, partitions: int) -> int:
    from kafka.partitioner.default import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize("partitioner", ["murmur2", "crc32", "round-robin"])
def test_keyed_lines_land_where_the_partitioner_says(
    broker: BrokerProcess, partitioner: str
) -> None:
    topic = f"keyed-{partitioner}"
    ok(broker, "topics", "create", topic, "--partitions", str(PARTITIONS))
    lines = [f"{key}:value of {key}" for key in KEYS]
    ok(
        broker,
        "produce",
        topic,
        "--key-separator",
        ":",
        "--partitioner",
        partitioner,
        stdin="\n".join(lines) + "\n",
    )
    expected: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    for i, key in enumerate(KEYS):
        if partitioner == "murmur2":
            partition = kafka_python_murmur2_partition(key, PARTITIONS)
        elif partitioner == "crc32":
            partition = zlib.crc32(key.encode()) % PARTITIONS
        else:
            partition = i % PARTITIONS
        expected[partition].append(f"{key}\tvalue of {key}")
    for partition, want in expected.items():
        assert consume_keyed(broker, topic, partition, len(want)) == want


def test_murmur2_matches_librdkafka_java_compatible_partitioner(broker: BrokerProcess) -> None:
    """librdkafka's ``murmur2_random`` is documented as the Java client's placement."""
    ok(broker, "topics", "create", "java-cli", "--partitions", "7")
    ok(broker, "topics", "create", "java-rdkafka", "--partitions", "7")
    ok(
        broker,
        "produce",
        "java-cli",
        "--key-separator",
        "=",
        stdin="".join(f"{key}=x\n" for key in KEYS),
    )
    placed = confluent_produce(
        broker.bootstrap,
        "java-rdkafka",
        [Rec(key=key.encode(), value=key.encode()) for key in KEYS],
        partitioner="murmur2_random",
    )
    theirs = {r.key.decode(): r.partition for r in placed if r.key is not None}
    ours = {}
    for partition in range(7):
        count = sum(1 for p in theirs.values() if p == partition)
        for line in consume_keyed(broker, "java-cli", partition, count):
            ours[line.split("\t")[0]] = partition
    assert ours == theirs


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_compression_round_trips(broker: BrokerProcess, codec: str) -> None:
    topic = f"codec-{codec}"
    ok(broker, "topics", "create", topic, "--partitions", "1")
    values = [f"{codec} line {i} " + "x" * (i % 50) for i in range(500)]
    ok(broker, "produce", topic, "--compression", codec, stdin="\n".join(values))
    out = ok(broker, "consume", topic, "--from-beginning", "--max-messages", "500")
    assert out.splitlines() == values


def test_consume_whole_topic_unkeyed_and_offsets(broker: BrokerProcess) -> None:
    ok(broker, "topics", "create", "plain", "--partitions", "3")
    values = [f"v{i}" for i in range(30)]
    ok(broker, "produce", "plain", "--acks", "1", stdin="\r\n".join(values) + "\r\n")
    out = ok(broker, "consume", "plain", "--from-beginning", "--max-messages", "30")
    assert sorted(out.splitlines()) == sorted(values)
    # Without --print-key nothing but values; with it, a null key shows as null.
    keyed = ok(
        broker,
        "consume",
        "plain",
        "--from-beginning",
        "--print-key",
        "--key-separator",
        "|",
        "--max-messages",
        "1",
    )
    assert keyed.startswith("null|v")

    ok(broker, "produce", "plain", "--partition", "2", stdin="a\nb\nc\n")
    per_partition = ok(
        broker, "consume", "plain", "--partition", "2", "--from-beginning", "--timeout-ms", "1500"
    ).splitlines()
    assert per_partition[-3:] == ["a", "b", "c"]
    end = len(per_partition)
    tail = ok(
        broker,
        "consume",
        "plain",
        "--partition",
        "2",
        "--offset",
        str(end - 2),
        "--max-messages",
        "2",
    )
    assert tail.splitlines() == ["b", "c"]


def test_consume_from_latest_sees_only_new_records(broker: BrokerProcess) -> None:
    ok(broker, "topics", "create", "latest", "--partitions", "1")
    ok(broker, "produce", "latest", stdin="old\n")
    reader = subprocess.Popen(
        [
            *(MOLDAU, "consume", "latest", "--max-messages", "1", "--timeout-ms", "20000"),
            *("--bootstrap-server", broker.bootstrap),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # We cannot see when the reader has found the end; keep producing
        # until it prints its one record, which must be a new one.
        for _ in range(200):
            ok(broker, "produce", "latest", stdin="new\n")
            try:
                reader.wait(0.05)
                break
            except subprocess.TimeoutExpired:
                pass
        out, err = reader.communicate(timeout=20)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    assert out == "new\n"
    quiet = moldau(broker, "consume", "latest", "--timeout-ms", "300")
    assert (quiet.returncode, quiet.stdout) == (0, "")


def test_timeout_ends_an_idle_consume(broker: BrokerProcess) -> None:
    ok(broker, "topics", "create", "idle", "--partitions", "2")
    done = moldau(broker, "consume", "idle", "--timeout-ms", "300")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_ctrl_c_and_closed_pipe_end_consume_quietly(broker: BrokerProcess) -> None:
    ok(broker, "topics", "create", "quiet", "--partitions", "1")
    # More than a pipe buffer holds, so that the writer must notice a gone reader.
    ok(broker, "produce", "quiet", stdin="".join(f"{i} {'x' * 100}\n" for i in range(2000)))
    reader = subprocess.Popen(
        [MOLDAU, "consume", "quiet", "--from-beginning", "--bootstrap-server", broker.bootstrap],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Drained all along by a thread: the consumer never blocks on a full pipe,
    # and each wait below has its own deadline and says what it waited for.
    lines: list[str] = []
    drain = threading.Thread(target=_collect, args=(reader, lines), daemon=True)
    drain.start()
    try:
        wait_for(lambda: lines, 30, what="the first record (running, not starting up)")
        assert lines[0].startswith("0 x")
        reader.send_signal(signal.SIGINT)
        code = reader.wait(timeout=10)
        assert reader.stderr is not None
        err = reader.stderr.read()
    finally:
        reader.kill()
    assert (code, err) == (130, "")

    # `moldau consume ... | head -1`: the reader goes away, no complaint.
    piped = subprocess.run(
        f"{MOLDAU} consume quiet --from-beginning --bootstrap-server {broker.bootstrap} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (piped.stdout, piped.stderr) == (f"0 {'x' * 100}\n", "")


def test_ctrl_c_ends_a_produce_whose_stdin_is_still_open(broker: BrokerProcess) -> None:
    """A person typing into ``moldau produce`` presses Ctrl-C: it must exit
    at once, not wait for the line being typed."""
    ok(broker, "topics", "create", "typed", "--partitions", "1")
    writer = subprocess.Popen(
        [MOLDAU, "produce", "typed", "--bootstrap-server", broker.bootstrap],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdin is not None
        writer.stdin.write("first\n")
        writer.stdin.flush()
        # Sent and stored: the producer is running, reading the next line.
        read = ok(broker, "consume", "typed", "--from-beginning", "--max-messages", "1")
        assert read == "first\n"
        writer.send_signal(signal.SIGINT)
        code = writer.wait(timeout=10)
        assert writer.stderr is not None
        assert (code, writer.stderr.read()) == (130, "")
    finally:
        writer.kill()
        if writer.stdin is not None:
            writer.stdin.close()


# --- errors ----------------------------------------------------------------


def test_produce_and_consume_missing_topic_without_auto_create(
    strict_broker: BrokerProcess,
) -> None:
    line = fails(strict_broker, "produce", "ghost", "--max-block-ms", "300", stdin="x\n")
    assert line == "moldau: topic 'ghost' does not exist (UNKNOWN_TOPIC_OR_PARTITION)"
    line = fails(strict_broker, "consume", "ghost", "--max-block-ms", "300")
    assert line == "moldau: topic 'ghost' does not exist (UNKNOWN_TOPIC_OR_PARTITION)"
    assert "ghost" not in ok(strict_broker, "topics", "list").splitlines()


def test_usage_errors_are_one_line(broker: BrokerProcess) -> None:
    ok(broker, "topics", "create", "usage", "--partitions", "2")
    line = fails(broker, "produce", "usage", "--key-separator", ":", stdin="k:v\nno separator\n")
    assert line == "moldau: line 2 has no key separator ':'"
    assert (
        fails(broker, "consume", "usage", "--offset", "3") == "moldau: --offset needs --partition"
    )
    line = fails(broker, "produce", "usage", "--partition", "9", stdin="x\n")
    assert line.endswith("(UNKNOWN_TOPIC_OR_PARTITION)") and "partition 9" in line
    line = fails(broker, "consume", "usage", "--partition", "9")
    assert line.endswith("(UNKNOWN_TOPIC_OR_PARTITION)") and "partition 9" in line
    line = fails(broker, "consume", "usage", "--partition", "0", "--offset", "50")
    assert line.endswith("(OFFSET_OUT_OF_RANGE)")


def test_unreachable_broker_is_one_line() -> None:
    port = free_port()
    done = subprocess.run(
        [MOLDAU, "topics", "list", "--bootstrap-server", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"moldau: cannot connect to 127.0.0.1:{port} (Connection refused) (NETWORK_EXCEPTION)\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["topics", "create"],
        ["topics", "create", "x", "--partitions", "many"],
        ["produce", "t", "--partitioner", "random"],
        ["produce", "t", "--compression", "brotli"],
        ["consume", "t", "--no-such-flag"],
        ["topics", "create", "x", "--config", "novalue"],
    ],
)
def test_bad_flags_get_argparse_errors(args: list[str]) -> None:
    done = moldau(None, *args)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith("moldau")
    assert "error:" in done.stderr
    assert "Traceback" not in done.stderr


def test_version_and_bare_command_print_something_useful() -> None:
    import moldau as package

    version = moldau(None, "--version")
    assert (version.returncode, version.stdout) == (0, f"moldau {package.__version__}\n")
    bare = moldau(None)
    assert bare.returncode == 2
    assert bare.stderr.startswith("usage: moldau ") and "consume" in bare.stderr
    group = moldau(None, "topics")
    assert group.returncode == 2
    assert group.stderr.startswith("usage: moldau topics ") and "create" in group.stderr


def test_an_unknown_flag_shows_its_subcommands_usage() -> None:
    done = moldau(None, "topics", "create", "x", "--bogus")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: moldau topics create ")
    assert done.stderr.splitlines()[-1] == (
        "moldau topics create: error: unrecognized arguments: --bogus"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["topics", "alter", "x", "--partition", "3"],  # not --partitions
        ["consume", "t", "--from-begin"],  # not --from-beginning
        ["produce", "t", "--linger", "5"],  # not --linger-ms
    ],
)
def test_flags_are_never_abbreviated(args: list[str]) -> None:
    done = moldau(None, *args)
    assert done.returncode == 2, done.stdout
    assert "error:" in done.stderr


def test_a_busy_port_is_named_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [
                MOLDAU,
                "broker",
                "--override",
                f"listeners=PLAINTEXT://127.0.0.1:{port}",
                "--override",
                f"log.dirs={tmp_path}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert done.stderr == (
        f"moldau: cannot start the broker: cannot listen on 127.0.0.1:{port}: "
        "Address already in use\n"
    )


def test_help_does_not_import_the_client() -> None:
    code = (
        "import sys; from moldau.cli.main import build_parser; build_parser(); "
        "heavy = [m for m in sys.modules if m.startswith(('moldau.client', 'moldau.broker'))]; "
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


# --- a broker that restarts under the client ---------------------------------------


def test_consume_and_produce_ride_out_a_broker_restart(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    restarting = broker_factory()
    ok(restarting, "topics", "create", "restart", "--partitions", "2")
    ok(restarting, "produce", "restart", stdin="before-1\nbefore-2\n")
    reader = subprocess.Popen(
        [
            *(MOLDAU, "consume", "restart", "--from-beginning", "--max-messages", "4"),
            *("--timeout-ms", "30000", "--bootstrap-server", restarting.bootstrap),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer = subprocess.Popen(
        [MOLDAU, "produce", "restart", "--bootstrap-server", restarting.bootstrap],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and reader.stdout is not None
    try:
        # Both are connected and working before the broker goes away.
        assert sorted(reader.stdout.readline() for _ in range(2)) == ["before-1\n", "before-2\n"]
        writer.stdin.write("during-1\n")
        writer.stdin.flush()
        assert reader.stdout.readline() == "during-1\n"
        restarting.kill()
        writer.stdin.write("during-2\n")
        writer.stdin.flush()
        restarting.start()
        writer.stdin.close()
        assert writer.wait(30) == 0, writer.stderr.read() if writer.stderr else ""
        assert reader.stdout.readline() == "during-2\n"
        assert reader.wait(30) == 0
    finally:
        writer.kill()
        reader.kill()


def test_configs_alter_takes_effect_and_describe_shows_it(broker: BrokerProcess) -> None:
    ok(broker, "topics", "create", "cfg-topic", "--partitions", "1")
    said = ok(
        broker,
        "configs",
        "alter",
        "--topic",
        "cfg-topic",
        "--set",
        "retention.ms=60000",
        "--set",
        "max.message.bytes=2000",
    )
    assert said == (
        "Completed updating config for topic cfg-topic: "
        "set retention.ms=60000, set max.message.bytes=2000.\n"
    )
    described = ok(broker, "configs", "describe", "--topic", "cfg-topic")
    assert "  retention.ms=60000 sensitive=false source=DYNAMIC_TOPIC_CONFIG\n" in described
    assert "segment.bytes" not in described
    # The new limit is enforced at once, without a restart.
    too_big = "x" * 3000
    assert "MESSAGE_TOO_LARGE" in fails(broker, "produce", "cfg-topic", stdin=too_big + "\n")
    said = ok(broker, "configs", "alter", "--topic", "cfg-topic", "--delete", "max.message.bytes")
    assert said.endswith(": deleted max.message.bytes.\n")
    ok(broker, "produce", "cfg-topic", stdin=too_big + "\n")
    everything = ok(broker, "configs", "describe", "--topic", "cfg-topic", "--all")
    assert "segment.bytes=1073741824 sensitive=false source=DEFAULT_CONFIG" in everything
    # Unset values print as Kafka's tools print them, never as Python's None.
    for listing in (everything, ok(broker, "configs", "describe", "--broker", "0", "--all")):
        assert "None" not in listing


def test_configs_errors_are_one_line(broker: BrokerProcess) -> None:
    ok(broker, "topics", "create", "cfg-bad", "--partitions", "1")
    assert "INVALID_CONFIG" in fails(
        broker, "configs", "alter", "--topic", "cfg-bad", "--set", "retention.ms=soon"
    )
    assert "INVALID_CONFIG" in fails(
        broker, "configs", "alter", "--topic", "cfg-bad", "--set", "no.such.config=1"
    )
    assert "does not exist" in fails(
        broker, "configs", "alter", "--topic", "cfg-missing", "--set", "retention.ms=1"
    )
    assert "nothing to change" in fails(broker, "configs", "alter", "--topic", "cfg-bad")


# --- consuming as a group member -------------------------------------------------


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker whose groups form without the initial rebalance delay."""
    process = BrokerProcess(tmp_path_factory.mktemp("cli-groups") / "data", **FAST_GROUPS)
    try:
        yield process.start()
    finally:
        process.kill()


def test_consume_with_a_group_commits_and_resumes_after_it(group_broker: BrokerProcess) -> None:
    ok(group_broker, "topics", "create", "grouped", "--partitions", "3")
    ok(group_broker, "produce", "grouped", stdin="".join(f"a{i}\n" for i in range(10)))
    args = ["consume", "grouped", "--group", "readers", "--from-beginning"]
    first = ok(group_broker, *args, "--max-messages", "10")
    assert sorted(first.splitlines()) == sorted(f"a{i}" for i in range(10))

    ok(group_broker, "produce", "grouped", stdin="".join(f"b{i}\n" for i in range(5)))
    # --from-beginning only applies where the group has no committed offset.
    second = ok(group_broker, *args, "--max-messages", "5", "--timeout-ms", "10000")
    assert sorted(second.splitlines()) == sorted(f"b{i}" for i in range(5))
    described = ok(group_broker, "groups", "describe", "readers")
    assert "State: Empty" in described  # it left the group when it stopped
    lag = [line.split() for line in described.splitlines() if line.startswith("grouped ")]
    assert sum(int(row[2]) for row in lag) == 15 and all(row[4] == "0" for row in lag)

    line = fails(group_broker, "consume", "grouped", "--group", "readers", "--partition", "0")
    assert line == "moldau: --group takes its partitions from the group: no --partition or --offset"


def test_two_group_members_split_the_partitions(group_broker: BrokerProcess) -> None:
    ok(group_broker, "topics", "create", "split", "--partitions", "4")
    command = [
        MOLDAU,
        "consume",
        "split",
        "--group",
        "pair",
        "--print-key",
        "--bootstrap-server",
        group_broker.bootstrap,
    ]
    members = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    lines: list[list[str]] = [[], []]
    readers = [
        threading.Thread(target=_collect, args=(member, seen), daemon=True)
        for member, seen in zip(members, lines, strict=True)
    ]
    for reader in readers:
        reader.start()
    try:
        wait_for(
            lambda: (
                "State: Stable  Protocol: consumer/range  Members: 2"
                in ok(group_broker, "groups", "describe", "pair")
            ),
            30,
            what="both members in the group",
        )
        records = [Rec(key=f"k{i}".encode(), value=f"v{i}".encode()) for i in range(40)]
        placed = confluent_produce(group_broker.bootstrap, "split", records)
        partition_of = {r.key.decode(): r.partition for r in placed if r.key is not None}
        assert len(set(partition_of.values())) == 4
        wait_for(lambda: sum(len(seen) for seen in lines) >= len(records), 30, what="every record")
        for member in members:
            member.send_signal(signal.SIGINT)
        codes = [member.wait(20) for member in members]
        errors = [member.stderr.read() if member.stderr else "" for member in members]
    finally:
        for member in members:
            member.kill()
    keys = [[line.split("\t")[0] for line in seen] for seen in lines]
    assert sorted(keys[0] + keys[1]) == sorted(partition_of), errors
    shares = [{partition_of[k] for k in got} for got in keys]
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert (codes, errors) == ([130, 130], ["", ""])
    assert "State: Empty" in ok(group_broker, "groups", "describe", "pair")


def _collect(process: subprocess.Popen[str], lines: list[str]) -> None:
    """Read a process's stdout lines as they come (a thread per process)."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("zookeeper.connect=127.0.0.1", "zookeeper.connect"),
        ("compression.type=brotli", "compression.type"),
        ("offsets.topic.num.partitions=100000", "offsets.topic.num.partitions"),
        ("max.connections.per.ip.overrides=localhost", "max.connections.per.ip.overrides"),
    ],
)
def test_broker_refuses_a_bad_config_in_one_line(tmp_path: Path, override: str, key: str) -> None:
    done = subprocess.run(
        [MOLDAU, "broker", "--override", f"log.dirs={tmp_path}", "--override", override],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and key in done.stderr, done.stderr
    assert not (tmp_path / "moldau-metadata.json").exists()
