"""Which emulator stands in for which service (imported lazily: each pulls in its own data)."""

from __future__ import annotations

import importlib

from ela.emulators.server import Emulator

EMULATORS = {
    "spotify": "ela.emulators.spotify:SpotifyEmulator",
    "strava": "ela.emulators.strava:StravaEmulator",
    "garmin": "ela.emulators.garmin:GarminEmulator",
    "todoist": "ela.emulators.todoist:TodoistEmulator",
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
