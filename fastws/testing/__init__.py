"""Loopback servers and adapters for testing fastws and adapters built on it."""
from fastws.testing.feed import FeedServer, LoopbackFeedClient, depth_message

__all__ = ["FeedServer", "LoopbackFeedClient", "depth_message"]
