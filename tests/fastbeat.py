"""A test-only Celery app: the env's app with its clock moved by ``ELA_TEST_CLOCK_OFFSET`` s.

``celery -A tests.fastbeat beat`` is ``celery -A worker beat`` whose clock (``app.now``, read
by the scheduler and by every crontab) runs that many seconds ahead, so the test that starts it
chooses when the next whole minute comes: a few seconds after beat starts, instead of up to a
minute later. Only the offset changes, not the rate, so the leader lock's TTL, beat's sleeps and
the expiries keep their real lengths, and a tick is stamped with its (shifted) whole minute.

It lives in tests/, which is neither installed nor copied into the image (.dockerignore): no
production setting can reach it.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from worker import app as app

_OFFSET = timedelta(seconds=float(os.environ["ELA_TEST_CLOCK_OFFSET"]))
_real_now = app.now


def _shifted_now() -> datetime:
    return _real_now() + _OFFSET


app.now = _shifted_now
