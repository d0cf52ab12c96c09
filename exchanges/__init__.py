"""Exchange adapters built on ``fastws.BaseWebSocketInterface``."""
