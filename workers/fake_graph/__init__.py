"""A fake WhatsApp Cloud API for tests, demos and benchmarks, with runtime fault injection."""

from workers.fake_graph.app import create_app
from workers.fake_graph.server import serve

__all__ = ["create_app", "serve"]
