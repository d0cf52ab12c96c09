"""Generated protobuf classes for MEXC spot v3 pushes (package ``fastws.mexc``).

``mexc_push_pb2`` is generated from ``exchanges/mexc/proto/mexc_push.proto`` by
``scripts/gen_mexc_proto.sh``; do not edit it. This module re-exports its message
classes: ``from exchanges.mexc.pb import PushDataV3ApiWrapper``.
"""
from exchanges.mexc.pb.mexc_push_pb2 import (
    PrivateAccountV3Api,
    PrivateDealsV3Api,
    PrivateOrdersV3Api,
    PublicAggreBookTickerV3Api,
    PublicAggreDealsV3Api,
    PublicAggreDealsV3ApiItem,
    PublicAggreDepthV3ApiItem,
    PublicAggreDepthsV3Api,
    PublicBookTickerBatchV3Api,
    PublicBookTickerV3Api,
    PublicDealsV3Api,
    PublicDealsV3ApiItem,
    PublicIncreaseDepthV3ApiItem,
    PublicIncreaseDepthsBatchV3Api,
    PublicIncreaseDepthsV3Api,
    PublicLimitDepthV3ApiItem,
    PublicLimitDepthsV3Api,
    PublicMiniTickerV3Api,
    PublicMiniTickersV3Api,
    PublicSpotKlineV3Api,
    PushDataV3ApiWrapper,
)

__all__ = [
    "PrivateAccountV3Api",
    "PrivateDealsV3Api",
    "PrivateOrdersV3Api",
    "PublicAggreBookTickerV3Api",
    "PublicAggreDealsV3Api",
    "PublicAggreDealsV3ApiItem",
    "PublicAggreDepthV3ApiItem",
    "PublicAggreDepthsV3Api",
    "PublicBookTickerBatchV3Api",
    "PublicBookTickerV3Api",
    "PublicDealsV3Api",
    "PublicDealsV3ApiItem",
    "PublicIncreaseDepthV3ApiItem",
    "PublicIncreaseDepthsBatchV3Api",
    "PublicIncreaseDepthsV3Api",
    "PublicLimitDepthV3ApiItem",
    "PublicLimitDepthsV3Api",
    "PublicMiniTickerV3Api",
    "PublicMiniTickersV3Api",
    "PublicSpotKlineV3Api",
    "PushDataV3ApiWrapper",
]
