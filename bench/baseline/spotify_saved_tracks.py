"""Spotify saved tracks, sequentially, with spotipy: refresh the token, page with ``next``."""

from __future__ import annotations

import os
from typing import Any

import spotipy
from spotipy.oauth2 import SpotifyOAuth

from bench.baseline._common import main

LIMIT = 10_000


def run() -> tuple[list[Any], str, str]:
    auth = SpotifyOAuth(
        client_id=os.environ["SPOTIFY_CLIENT_ID"],
        client_secret=os.environ["SPOTIFY_CLIENT_SECRET"],
        redirect_uri=os.environ["SPOTIFY_REDIRECT_URI"],
        scope="user-library-read",
        open_browser=False,
    )
    auth.OAUTH_TOKEN_URL = os.environ["SPOTIFY_ACCOUNTS_URL"].rstrip("/") + "/api/token"
    token = auth.refresh_access_token(os.environ["SPOTIFY_REFRESH_TOKEN"])["access_token"]
    sp = spotipy.Spotify(auth=token)
    sp.prefix = os.environ["SPOTIFY_API_URL"]
    results = sp.current_user_saved_tracks(limit=50)
    items = list(results["items"])
    while results["next"] and len(items) < LIMIT:
        results = sp.next(results)
        items.extend(results["items"])
    return items[:LIMIT], "spotify", "saved_tracks"


if __name__ == "__main__":
    main(run)
