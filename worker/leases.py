"""The worker's lease keeper: renew our lease, reap dead workers, fence ourselves if cut off.

The mechanism is described in :mod:`ela.leases`. Here it is wired into a Celery worker:

- :class:`LeaseStep`, a worker bootstep, starts a :class:`Keeper` thread before the consumer
  takes its first message, so every delivery is recorded against a live lease
  (``worker/redis_transport.py`` asks :func:`held_key` on every delivery and ack);
- the keeper renews the lease every 5 s, and on each pass claims the deliveries of workers
  whose lease expired and puts them back on their queues through kombu's own restore;
- when a shutdown starts (SIGTERM, SIGQUIT, Ctrl-C, or a remote shutdown) the lease is
  shortened to :data:`~ela.leases.SHUTDOWN_TTL_S`, so a worker SIGKILLed before the end of its
  stop grace period is reaped within seconds; a clean exit releases it at once (``atexit``);
- if the lease cannot be renewed for :data:`~ela.leases.FENCE_AFTER_S`, or a reaper already
  declared this worker dead, the keeper kills the pool processes and exits the worker: its
  runs are about to be (or were) given to another worker, and must not run twice at once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import redis
from billiard.process import active_children
from celery import Celery, bootsteps
from kombu import Connection

from ela import leases

log = logging.getLogger("ela.leases")

EX_FENCED = 75  # EX_TEMPFAIL: the process manager restarts the worker

_keeper: Keeper | None = None


def held_key() -> str | None:
    """This worker's held-deliveries set, without the key prefix (kombu's pipes add it); None
    outside a worker (a producer, beat, ``ela run``), which holds no deliveries."""
    return _keeper.held_key if _keeper is not None else None


class Keeper(threading.Thread):
    """The thread that keeps one worker's lease and reaps the others'."""

    def __init__(self, app: Celery, nodename: str) -> None:
        super().__init__(name="ela-lease", daemon=True)
        conf = app.conf
        prefix = (conf.broker_transport_options or {}).get("global_keyprefix", "")
        # Short timeouts: a renewal that hangs must not outlive the lease it renews.
        client = redis.Redis.from_url(conf.broker_url, socket_timeout=2, socket_connect_timeout=2)
        self.worker = leases.new_worker_id(nodename)
        info = {"node": nodename, "host": os.uname().nodename, "pid": os.getpid()}
        info["env"] = app.main.removeprefix("ela-")
        self.lease = leases.Lease(client, leases.Keys(prefix), self.worker, info)
        self.held_key = leases.Keys().held(self.worker)
        self.app = app
        self.pid = os.getpid()
        self._connection: Connection | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._renewed: float | None = None  # when the lease was last renewed (monotonic)

    # -- lifecycle --------------------------------------------------------------------------

    def begin(self) -> None:
        """Take the lease (before the first delivery) and start renewing it. With Redis away,
        the thread takes it when Redis answers (the consumer cannot take anything before)."""
        try:
            self.lease.renew()
            self._renewed = time.monotonic()
            log.info("worker lease %s taken (ttl %.0f s)", self.worker, leases.LEASE_TTL_S)
        except redis.RedisError as exc:
            log.warning("worker lease %s not taken yet: %s; retrying", self.worker, exc)
        self.start()

    def shutting_down(self) -> None:
        """The worker is stopping: from now on a short lease (and no more reaping)."""
        self._stopping = True
        self._wake.set()

    def close(self) -> None:
        """The worker exits cleanly: release the lease, so whatever it still holds is reaped
        at once rather than when the lease runs out."""
        if self._closed or os.getpid() != self.pid:  # atexit also runs in forked children
            return
        self._closed = True
        self._wake.set()
        try:
            self.lease.release()
        except redis.RedisError as exc:
            log.warning("worker lease %s not released (%s); it expires by itself", self.worker, exc)

    # -- the thread ---------------------------------------------------------------------------

    def run(self) -> None:
        while not self._closed:
            ttl = leases.SHUTDOWN_TTL_S if self._stopping else leases.LEASE_TTL_S
            every = leases.SHUTDOWN_BEAT_EVERY_S if self._stopping else leases.BEAT_EVERY_S
            # Checked on time, not after a failed renewal: one that hangs (a blackholed link)
            # takes up to the client's 2 s timeout, and the lease must not run out first.
            # Never held, nothing to fence: no delivery is taken without Redis.
            renewed = self._renewed if self._renewed is not None else time.monotonic()
            deadline = renewed + ttl - leases.FENCE_MARGIN_S
            if time.monotonic() > deadline:
                silent = time.monotonic() - renewed
                self.fence(f"its lease could not be renewed for {silent:.0f} s")
            try:
                if not self.lease.renew(ttl):
                    self.fence("another worker found its lease expired and took its runs")
                self._renewed = time.monotonic()
                if not self._stopping:
                    self.reap()
            except (redis.RedisError, OSError) as exc:
                self._drop_connection()
                log.warning("worker lease %s not renewed: %s; retrying", self.worker, exc)
                every = min(every, max(0.1, deadline - time.monotonic() + 0.1))
            self._wake.wait(every)
            if not self._closed:
                self._wake.clear()

    def reap(self) -> None:
        """Give the deliveries of every worker whose lease expired back to their queues."""
        for dead in self.lease.dead_workers():
            tags = self.lease.claim(dead)
            if tags is None:  # renewed between the two reads: alive after all
                continue
            restored = sum(self._restore(tag) for tag in tags)
            log.warning(
                "worker %s is gone (its lease expired): %d of its unacknowledged message(s) "
                "put back on their queues",
                dead,
                restored,
            )

    def _restore(self, tag: str) -> bool:
        """Put one claimed delivery back on its queue, through kombu's restore (a WATCH/MULTI
        transaction on the unacked hash, so two reapers never restore it twice). Our QoS also
        drops the tag from our held set in the same transaction. False if it was acked or
        restored meanwhile."""
        if self._connection is None:
            self._connection = self.app.connection_for_write()
        present = bool(self.lease.client.hexists(self.lease.keys.unacked, tag))
        self._connection.default_channel.qos.restore_by_tag(tag)
        return present

    def _drop_connection(self) -> None:
        if self._connection is not None:
            # Already broken; all we want is a fresh one next time.
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def fence(self, reason: str) -> None:
        """Stop every run of this worker and exit, before another worker runs them again."""
        log.critical(
            "worker %s: %s; killing its pool processes and exiting so that no run goes on "
            "twice at once (the process manager restarts the worker)",
            self.worker,
            reason,
        )
        for child in active_children():
            if child.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
        logging.shutdown()
        os._exit(EX_FENCED)


class LeaseStep(bootsteps.StartStopStep):
    """Worker bootstep: a lease for this worker before its consumer starts (the consumer step
    is always started last)."""

    label = "ela lease"

    def start(self, worker: Any) -> None:
        global _keeper
        keeper = Keeper(worker.app, worker.hostname)
        keeper.begin()
        _keeper = keeper
        atexit.register(keeper.close)
        # Celery's handlers for these (installed before the bootsteps start) run the soft
        # shutdown inside the handler and send worker_shutting_down only after it: too late
        # to shorten the lease for the grace period. So the keeper hears the signal first.
        for name in STOP_SIGNALS:
            _notify_first(getattr(signal, name), keeper.shutting_down)

    def stop(self, worker: Any) -> None:
        # Not a release: the pool may still be finishing runs (a warm shutdown stops this step
        # before the pool). The lease goes at process exit, or runs out.
        if _keeper is not None:
            _keeper.shutting_down()

    shutdown = stop


STOP_SIGNALS = ("SIGTERM", "SIGQUIT", "SIGINT")


def _notify_first(signum: int, notify: Callable[[], None]) -> None:
    """Call ``notify`` when ``signum`` arrives, then whatever handled it before."""
    previous = signal.getsignal(signum)

    def handler(sig: int, frame: FrameType | None) -> None:
        notify()
        if callable(previous):
            previous(sig, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)

    signal.signal(signum, handler)


def install(app: Celery) -> None:
    app.steps["worker"].add(LeaseStep)
