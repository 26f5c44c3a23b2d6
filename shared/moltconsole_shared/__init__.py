"""What the console and the backend share, and nothing of either: the config loader, the paths
that lead one to the other, inert text, durations, the version, and the wire types of the API.

Both sides import this package; it imports neither (tests/unit/test_import_direction.py), and
needs only the standard library and pydantic.
"""

__version__ = "0.1.0"
