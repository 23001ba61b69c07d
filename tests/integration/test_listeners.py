"""Several listeners: a client is given the addresses of the listener it came
in on (Metadata, FindCoordinator, DescribeCluster), as Kafka answers, so a
broker reachable under one address inside and another outside serves both."""

from __future__ import annotations

import socket
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

import moldau
from moldau.protocol.messages import decode_response, encode_request

FIND_COORDINATOR = 10


def _find_coordinator(port: int, group: str) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode_request(FIND_COORDINATOR, 1, 7, "t", {"key": group, "key_type": 0}))
        reader = sock.makefile("rb")
        size = int.from_bytes(reader.read(4), "big")
        _, body = decode_response(FIND_COORDINATOR, 1, reader.read(size))
    return dict(body)


def test_each_listener_advertises_its_own_address() -> None:
    config = {
        "listeners": "INSIDE://127.0.0.1:0,OUTSIDE://127.0.0.1:0",
        "listener.security.protocol.map": "INSIDE:PLAINTEXT,OUTSIDE:PLAINTEXT",
        "inter.broker.listener.name": "INSIDE",
    }
    with moldau.Broker(config=config) as broker:
        addresses = broker.bootstrap_servers.split(",")
        assert len(set(addresses)) == 2
        for address in addresses:
            port = int(address.rsplit(":", 1)[1])
            admin = AdminClient({"bootstrap.servers": address})
            brokers = admin.list_topics(timeout=10).brokers
            assert [(b.id, b.port) for b in brokers.values()] == [(0, port)]
            assert [n.port for n in admin.describe_cluster().result(10).nodes] == [port]

            group = f"l-{uuid.uuid4().hex[:8]}"
            found = _find_coordinator(port, group)
            assert (found["error_code"], found["port"]) == (0, port)

            # A client that knows only this listener produces, joins a group
            # and commits through it.
            producer = Producer({"bootstrap.servers": address})
            producer.produce(group, b"v")
            assert producer.flush(10) == 0
            consumer = Consumer(
                {"bootstrap.servers": address, "group.id": group, "auto.offset.reset": "earliest"}
            )
            try:
                consumer.subscribe([group])
                message = None
                for _ in range(100):
                    message = consumer.poll(0.1)
                    if message is not None:
                        break
                assert message is not None and message.value() == b"v"
                consumer.commit(message, asynchronous=False)
            finally:
                consumer.close()
