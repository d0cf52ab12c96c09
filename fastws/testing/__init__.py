"""Generic loopback servers for testing fastws and adapters built on it.

The simulator base (``fastws.testing._simbase``), the fault proxy, the synthetic
market, the replay server and a scripted feed server. Each exchange's simulator
lives in its own package (``exchanges.<name>.simulator``) and is found through
``fastws.registry``.
"""
from fastws.testing.fault_proxy import FaultProxy
from fastws.testing.feed import FeedServer, LoopbackFeedClient, SubscribeControl, depth_message
from fastws.testing.market import SymbolMarket, SyntheticMarket
from fastws.testing.replay import ReplayProfile, ReplayServer

__all__ = ["FaultProxy", "FeedServer", "LoopbackFeedClient", "ReplayProfile", "ReplayServer", "SubscribeControl",
           "SymbolMarket", "SyntheticMarket", "depth_message"]
