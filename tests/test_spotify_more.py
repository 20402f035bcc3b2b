"""Spotify's followed artists and profile (issue 15.2), through spotipy against the emulator."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from ela import config as config_module
from ela.connectors.spotify import SCOPES, authorize
from ela.errors import PayloadError, ReauthError
from ela.pipeline import Overrides, run_job
from ela.sandbox.emulators import spotify as emu
from ela.sandbox.emulators.spotify import SpotifyEmulator
from ela.sandbox.processes import REPO
from ela.sinks import Bucket, LocalBucket
from ela.tokens import TokenStore
from tests.conftest import read_jsonl

CONFIG = config_module.load(REPO / "ingestion-config-dev.yaml")
PRD = config_module.load(REPO / "ingestion-config-prd.yaml")
WHEN = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
JSON = list[dict[str, Any]]
OLD_SCOPE = " ".join(s for s in emu.SCOPE.split() if s != "user-follow-read")


@pytest.fixture
def spotify_emu() -> Iterator[SpotifyEmulator]:
    with SpotifyEmulator(saved_tracks=20, plays=60, followed=130) as emulator:
        yield emulator


def run(
    emulator: SpotifyEmulator, bucket: Bucket, tmp_path: Path, job: str, limit: int | None = None
) -> dict[str, Any]:
    emulator.reset_calls()
    return run_job(
        CONFIG,
        job,
        run_id=str(uuid.uuid4()),
        scheduled_at=WHEN,
        bucket=bucket,
        environ={**emulator.environ(), "ELA_TOKEN_DIR": str(tmp_path / "tokens")},
        overrides=Overrides(limit=limit),
    )


def landed(bucket: Bucket, manifest: dict[str, Any]) -> JSON:
    return [r for o in manifest["objects"] for r in read_jsonl(bucket.get_bytes(o["name"]))]


def test_followed_artists_follow_the_cursor_pages_to_a_null_next(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    manifest = run(spotify_emu, local_bucket, tmp_path, "spotify_followed_artists", limit=1000)
    assert landed(local_bucket, manifest) == spotify_emu.followed  # as sent, in API order
    # ⌈130/50⌉ pages; the last page's `cursors.after` is still set, and is not asked for.
    assert spotify_emu.calls_to("/v1/me/following") == 3
    assert manifest["api_calls"] == 4  # and the token refresh
    assert manifest["warnings"] == []
    [obj] = manifest["objects"]
    assert obj["name"].endswith("_spotify_followed_artists.jsonl")


def test_the_last_page_keeps_its_cursor_but_has_no_next(spotify_emu: SpotifyEmulator) -> None:
    # The quirk the connector must not be fooled by, as the emulator serves it.
    grant = {"grant_type": "refresh_token", "refresh_token": emu.REFRESH_TOKEN}
    auth = (emu.CLIENT_ID, emu.CLIENT_SECRET)
    token = requests.post(f"{spotify_emu.url}/api/token", data=grant, auth=auth, timeout=5).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    after = spotify_emu.followed[99]["id"]
    url = f"{spotify_emu.api_url}me/following?type=artist&limit=50&after={after}"
    last = requests.get(url, headers=headers, timeout=5).json()["artists"]
    assert last["next"] is None and last["cursors"]["after"] == spotify_emu.followed[-1]["id"]
    assert len(last["items"]) == 30 and last["total"] == 130


def test_followed_artists_respect_the_limit(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    manifest = run(spotify_emu, local_bucket, tmp_path, "spotify_followed_artists", limit=60)
    assert landed(local_bucket, manifest) == spotify_emu.followed[:60]
    assert spotify_emu.calls_to("/v1/me/following") == 2


def test_a_total_that_changes_between_pages_is_read_to_the_end_and_warned(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    before = {a["id"] for a in spotify_emu.followed}
    spotify_emu.follow_while_paging = 2  # the user follows two artists per page read
    manifest = run(spotify_emu, local_bucket, tmp_path, "spotify_followed_artists", limit=1000)
    ids = [a["id"] for a in landed(local_bucket, manifest)]
    assert len(ids) == len(set(ids))  # nothing twice
    assert before <= set(ids)  # nothing followed before the run is lost
    assert ids == sorted(ids)
    [warning] = manifest["warnings"]
    assert "the list changed while it was read" in warning
    assert "spotify: followed_artists page 2" in warning


def test_a_token_without_the_follow_scope_asks_for_reauth_naming_it(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    spotify_emu.scope = OLD_SCOPE  # authorized before user-follow-read was asked for
    with pytest.raises(ReauthError, match="user-follow-read") as caught:
        run(spotify_emu, local_bucket, tmp_path, "spotify_followed_artists")
    assert "ela auth spotify" in str(caught.value)
    assert list(local_bucket.list("spotify/landing/")) == []
    assert list(local_bucket.list("spotify/_runs/")) == []
    # The other jobs are not affected by the missing scope.
    assert run(spotify_emu, local_bucket, tmp_path, "spotify_user_profile")["records"] == 1


def test_ela_auth_spotify_asks_for_the_follow_scope(
    spotify_emu: SpotifyEmulator, tmp_path: Path
) -> None:
    assert "user-follow-read" in SCOPES
    spotify_emu.scope = OLD_SCOPE  # only what the authorize request asks for is granted now
    store = TokenStore(tmp_path / "tokens")
    said: list[str] = []

    def ask(prompt: str, secret: bool) -> str:
        [url] = [line for line in said if line.startswith(spotify_emu.url)]
        assert "user-follow-read" in urllib.parse.unquote(url)
        return str(requests.get(url, allow_redirects=False, timeout=5).headers["Location"])

    authorize({**spotify_emu.environ(), "SPOTIFY_REFRESH_TOKEN": ""}, store, ask, said.append)
    bucket = LocalBucket(tmp_path / "bucket")
    env = {**spotify_emu.environ(), "ELA_TOKEN_DIR": str(tmp_path / "tokens")}
    env["SPOTIFY_REFRESH_TOKEN"] = ""
    manifest = run_job(
        CONFIG,
        "spotify_followed_artists",
        run_id=str(uuid.uuid4()),
        scheduled_at=WHEN,
        bucket=bucket,
        environ=env,
    )
    assert manifest["records"] == 100  # the dev config's limit


def test_a_looping_cursor_is_a_payload_error(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    spotify_emu.loop = True
    with pytest.raises(PayloadError, match=r"followed_artists page 4.*loops"):
        run(spotify_emu, local_bucket, tmp_path, "spotify_followed_artists", limit=1000)
    assert list(local_bucket.list("spotify/landing/")) == []


def test_a_next_link_to_another_host_is_refused(
    spotify_emu: SpotifyEmulator, local_bucket: LocalBucket, tmp_path: Path
) -> None:
    spotify_emu.link_base = "http://elsewhere.invalid:9"
    with pytest.raises(PayloadError, match=r"elsewhere\.invalid"):
        run(spotify_emu, local_bucket, tmp_path, "spotify_followed_artists", limit=1000)


def test_user_profile_lands_as_sent_on_the_gcs_emulator(
    spotify_emu: SpotifyEmulator, gcs_bucket: Bucket, tmp_path: Path
) -> None:
    manifest = run(spotify_emu, gcs_bucket, tmp_path, "spotify_user_profile")
    assert landed(gcs_bucket, manifest) == [spotify_emu.profile]
    assert spotify_emu.calls_to("/v1/me") == 1
    assert manifest["objects"][0]["name"].endswith("_spotify_user_profile.jsonl")


def test_prd_waits_for_the_follow_scope() -> None:
    assert CONFIG.jobs["spotify_followed_artists"].enabled
    assert not PRD.jobs["spotify_followed_artists"].enabled  # until re-authorized (scope)
    assert PRD.jobs["spotify_user_profile"].enabled
