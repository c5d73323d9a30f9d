"""The Python local-first client of electric-trio (see the public API below)."""
