"""Bounds on one upload-pack request, v0 and v2 alike.

A git client sends its haves in rounds of at most a few hundred new ones,
plus the ones already found common (at most one per branch tip it has in
practice); 100,000 is far above what a real fetch sends and keeps a hostile
request's sets to a few MB.
"""

MAX_WANTS = 100_000
MAX_HAVES = 100_000
MAX_SHALLOWS = 100_000
