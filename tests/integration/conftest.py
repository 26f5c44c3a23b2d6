"""Fixtures shared by the integration tests (found by pytest by name)."""

from tests.support.gateway import fake, make_gateway

__all__ = ["fake", "make_gateway"]
