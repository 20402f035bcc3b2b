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
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis, virtual

log = logging.getLogger("ela.broker")


class QoS(redis.QoS):
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
