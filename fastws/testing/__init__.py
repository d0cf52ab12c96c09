"""Loopback servers and adapters for testing fastws and adapters built on it."""
from fastws.testing.binance_sim import BinanceConnection, BinanceSimulator, is_valid_stream
from fastws.testing.fault_proxy import FaultProxy
from fastws.testing.feed import FeedServer, LoopbackFeedClient, depth_message
from fastws.testing.market import SymbolMarket, SyntheticMarket
from fastws.testing.mexc_sim import MexcConnection, MexcSimulator
from fastws.testing.replay import ReplayServer

__all__ = ["BinanceConnection", "BinanceSimulator", "FeedServer", "LoopbackFeedClient", "MexcConnection",
           "MexcSimulator", "SymbolMarket", "SyntheticMarket", "depth_message", "is_valid_stream"]
__all__ += ["FaultProxy", "ReplayServer"]
