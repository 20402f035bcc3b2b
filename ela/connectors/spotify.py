"""Spotify via spotipy."""

from __future__ import annotations

from ela.connectors._pending import not_implemented, pending_service

PAGE_MAX = 50  # Spotify's maximum page size for every endpoint used here.

spotify = pending_service(
    "spotify",
    ("SPOTIFY_CLIENT_ID", "SPOTIFY_CLIENT_SECRET", "SPOTIFY_REDIRECT_URI", "SPOTIFY_REFRESH_TOKEN"),
)
# Recently played only ever returns the last 50 plays, whatever the paging.
spotify.data_type("recently_played", params=("limit",), max_limit=50, incremental=True)(
    not_implemented
)
spotify.data_type("saved_tracks", params=("limit",), max_limit=10_000)(not_implemented)
spotify.data_type("saved_albums", params=("limit",), max_limit=10_000)(not_implemented)
spotify.data_type("playlists", params=("limit",), max_limit=10_000)(not_implemented)
# Top items: at most 50 per call, and Spotify computes only the top 50 per time range.
spotify.data_type("top_tracks", params=("limit", "time_range"), max_limit=50)(not_implemented)
spotify.data_type("top_artists", params=("limit", "time_range"), max_limit=50)(not_implemented)
