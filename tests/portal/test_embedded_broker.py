"""The embedded default's broker (portal/broker.py) under the load the demo puts on it: web,
worker and beat publishing at once while a worker consumes."""

import threading

import pytest
from kombu import Connection

from portal import broker

pytestmark = pytest.mark.sqlite_is_enough
PUBLISHERS = 4
MESSAGES = 150


def run_publishers_and_a_consumer(url: str, options: dict) -> tuple[list, list]:
    """Each publisher has its own connection, as web, beat and the worker's own retries do;
    one consumer drains the queue meanwhile. Returns (received payloads, errors)."""
    received, errors = [], []

    def publish(publisher: int):
        try:
            with Connection(url, transport_options=options) as connection:
                queue = connection.SimpleQueue("celery")
                for n in range(MESSAGES):
                    queue.put({"publisher": publisher, "n": n, "pad": "x" * 20_000})
        except Exception as exc:  # the test counts every failure
            errors.append(repr(exc))

    def consume():
        with Connection(url, transport_options=options) as connection:
            queue = connection.SimpleQueue("celery")
            while len(received) < PUBLISHERS * MESSAGES:
                try:
                    message = queue.get(timeout=10)
                except queue.Empty:
                    return
                except Exception as exc:
                    errors.append(repr(exc))
                    return
                received.append(message.payload)
                message.ack()

    consumer = threading.Thread(target=consume)
    publishers = [threading.Thread(target=publish, args=(i,)) for i in range(PUBLISHERS)]
    consumer.start()
    for thread in publishers:
        thread.start()
    for thread in (*publishers, consumer):
        thread.join()
    return received, errors


def test_no_message_is_read_half_written_or_lost(tmp_path):
    url, options = broker.embedded(tmp_path)
    broker.prepare(url, options)

    received, errors = run_publishers_and_a_consumer(url, options)

    assert errors == []
    assert len(received) == PUBLISHERS * MESSAGES
    assert {(m["publisher"], m["n"]) for m in received} == {
        (p, n) for p in range(PUBLISHERS) for n in range(MESSAGES)
    }
    assert all(len(m["pad"]) == 20_000 for m in received)


def test_prune_keeps_the_messages_not_yet_delivered(tmp_path):
    url, options = broker.embedded(tmp_path)
    broker.prepare(url, options)
    with Connection(url, transport_options=options) as connection:
        queue = connection.SimpleQueue("celery")
        for n in range(3):
            queue.put({"n": n})
        queue.get(timeout=5).ack()

        assert broker.prune(url) == 1
        assert broker.prune(url) == 0
        assert [queue.get(timeout=5).payload["n"] for _ in range(2)] == [1, 2]


def test_prune_on_a_broker_never_used_and_on_redis(tmp_path):
    assert broker.prune(broker.embedded(tmp_path)[0]) == 0
    assert broker.prune("redis://127.0.0.1:6379/0") == 0
