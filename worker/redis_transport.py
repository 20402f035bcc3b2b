"""kombu's Redis transport, surviving a broker restart while acks_late tasks are running.

When the connection to Redis drops, Celery 5.7's consumer collects the old connection (which
unhooks the transport's client) and reconnects on a new one. Two things then still touch the
old channel, and each raises ``AttributeError: 'NoneType' object has no attribute 'hostname'``
past Celery's error handling, stopping the worker with "Unrecoverable error" instead of letting
it carry on (seen here with a task in flight during a Redis restart; the celery/kombu trackers
hold the same family of reports, e.g. celery#10205):

- closing the old channel restores its unacknowledged messages through the lost client;
- the in-flight task finishes and acks (or rejects) its message on the old channel.

Neither can reach Redis through that channel, and neither needs to: the messages stay in
Redis's unacked set, which kombu moves back to their queues after the visibility timeout, and a
redelivered run is idempotent (same run id; a committed run is not repeated). So on a channel
whose connection is gone this QoS drops its local bookkeeping and leaves the rest to Redis.

It also records which worker holds each delivery (``ela/leases.py``): the tag goes into the
worker's held set in the same transaction that puts the message in kombu's unacked hash, and
leaves it in the same transaction that removes it (ack, reject, restore), so that when the
worker dies the reapers in the other workers know exactly which messages to give back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kombu.transport import redis, virtual
from kombu.utils.json import dumps

from worker.leases import held_key

log = logging.getLogger("ela.broker")


class QoS(redis.QoS):
    def append(self, message: Any, delivery_tag: Any) -> None:
        """kombu's append (the message into the unacked hash and its index), plus the tag into
        this worker's held set, in one transaction."""
        held = held_key()
        if held is None:
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        raw = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}).hset(
                self.unacked_key, delivery_tag, raw
            ).sadd(held, delivery_tag).execute()
        virtual.QoS.append(self, message, delivery_tag)

    def _remove_from_indices(self, delivery_tag: Any, pipe: Any = None) -> Any:
        pipe = super()._remove_from_indices(delivery_tag, pipe)
        held = held_key()
        return pipe if held is None else pipe.srem(held, delivery_tag)

    def _connection_gone(self) -> bool:
        """The channel's transport, or the transport's client, is already torn down."""
        transport = self.channel.connection
        return transport is None or transport.client is None

    def ack(self, delivery_tag: Any) -> None:
        if self._connection_gone():
            log.warning("ack after a lost broker connection: Redis redelivers the message later")
            virtual.QoS.ack(self, delivery_tag)
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self._connection_gone():
            log.warning("reject after a lost broker connection: Redis redelivers the message")
            virtual.QoS.ack(self, delivery_tag)
            return
        super().reject(delivery_tag, requeue)

    def restore_unacked(self, client: Any = None) -> None:
        if client is None and self._connection_gone():
            delivered: dict[Any, Any] = self._delivered  # type: ignore[assignment]
            log.warning(
                "broker connection lost with %d task(s) in flight; Redis redelivers their "
                "messages after the visibility timeout",
                len(delivered),
            )
            delivered.clear()
            return
        super().restore_unacked(client)


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
