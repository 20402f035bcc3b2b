"""The provider emulators for scripts/compose-smoke, served to the other containers of the stack.

Runs inside the image under test (``python /smoke/emulators.py HOST DELAY``): Strava on :8081
and Todoist on :8082, on all interfaces of its container. Writes what points a worker at them
(URLs under the service name HOST, and credentials they accept) to /tmp/emulators.env, then
serves until stopped. The first Strava activities page waits DELAY seconds, so a run is still
in flight when the smoke stops the worker.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from ela.sandbox.emulators.server import Emulator, Fault
from ela.sandbox.emulators.strava import StravaEmulator
from ela.sandbox.emulators.todoist import TodoistEmulator

PORTS = {8081: StravaEmulator, 8082: TodoistEmulator}


def main(host: str, delay: float) -> None:
    environ: dict[str, str] = {}
    emulators: list[Emulator] = []
    for port, kind in PORTS.items():
        emulator = kind().start(port=port, host="0.0.0.0")
        emulators.append(emulator)
        for key, value in emulator.environ().items():
            environ[key] = value.replace(f"//0.0.0.0:{port}", f"//{host}:{port}")
    emulators[0].inject(Fault(path="/api/v3/athlete/activities", delay=delay, times=1))
    Path("/tmp/emulators.env").write_text("".join(f"{k}={v}\n" for k, v in environ.items()))
    print("emulators ready:", ", ".join(sorted(environ)), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main(sys.argv[1], float(sys.argv[2]))
