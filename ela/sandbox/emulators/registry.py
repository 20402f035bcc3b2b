"""Which emulator stands in for which service (imported lazily: each pulls in its own data)."""

from __future__ import annotations

import importlib

from ela.sandbox.emulators.server import Emulator

EMULATORS = {
    "spotify": "ela.sandbox.emulators.spotify:SpotifyEmulator",
    "strava": "ela.sandbox.emulators.strava:StravaEmulator",
    "garmin": "ela.sandbox.emulators.garmin:GarminEmulator",
    "todoist": "ela.sandbox.emulators.todoist:TodoistEmulator",
}


def emulator_for(service: str) -> Emulator | None:
    """A new (not started) emulator for ``service``, or None if there is none yet."""
    module_name, _, class_name = EMULATORS[service].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None
    emulator: Emulator = getattr(module, class_name)()
    return emulator
