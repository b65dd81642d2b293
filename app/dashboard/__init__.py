"""The web dashboard: static pages served by the API, talking to the public API only."""
