"""The MEXC schema against PROTOCOLS.md, and the reference codec (decode_reference, encode_push)."""
from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings

from exchanges.mexc import pb
from exchanges.mexc.reference import BODY_FIELDS, decode_reference, encode_push
from tests.mexc_strategies import mutated_push_bytes, parse_wire, push_bytes, serialize_wire, wrappers

_TYPES = {FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_INT32: "int32",
          FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_BOOL: "bool"}

# PROTOCOLS.md, MEXC "Protobuf schema": message -> {number: "name:type"}; "[T]" is a
# repeated message T, "?" marks an `optional` field.
SCHEMA: dict[str, dict[int, str]] = {
    "PushDataV3ApiWrapper": {1: "channel:string", 3: "symbol:string?", 4: "symbolId:string?",
                             5: "createTime:int64?", 6: "sendTime:int64?"},
    "PublicAggreDealsV3Api": {1: "deals:[PublicAggreDealsV3ApiItem]", 2: "eventType:string"},
    "PublicAggreDealsV3ApiItem": {1: "price:string", 2: "quantity:string", 3: "tradeType:int32", 4: "time:int64",
                                  5: "tradeId:string"},
    "PublicAggreDepthsV3Api": {1: "asks:[PublicAggreDepthV3ApiItem]", 2: "bids:[PublicAggreDepthV3ApiItem]",
                               3: "eventType:string", 4: "fromVersion:string", 5: "toVersion:string",
                               6: "lastOrderCreateTime:int64"},
    "PublicAggreDepthV3ApiItem": {1: "price:string", 2: "quantity:string"},
    "PublicLimitDepthsV3Api": {1: "asks:[PublicLimitDepthV3ApiItem]", 2: "bids:[PublicLimitDepthV3ApiItem]",
                               3: "eventType:string", 4: "version:string", 5: "lastOrderCreateTime:int64"},
    "PublicLimitDepthV3ApiItem": {1: "price:string", 2: "quantity:string"},
    "PublicAggreBookTickerV3Api": {1: "bidPrice:string", 2: "bidQuantity:string", 3: "askPrice:string",
                                   4: "askQuantity:string", 5: "version:string", 6: "lastOrderCreateTime:int64"},
    "PublicBookTickerV3Api": {1: "bidPrice:string", 2: "bidQuantity:string", 3: "askPrice:string",
                              4: "askQuantity:string"},
    "PublicBookTickerBatchV3Api": {1: "items:[PublicBookTickerV3Api]", 2: "version:string",
                                   3: "lastOrderCreateTime:int64"},
    "PublicSpotKlineV3Api": {1: "interval:string", 2: "windowStart:int64", 3: "openingPrice:string",
                             4: "closingPrice:string", 5: "highestPrice:string", 6: "lowestPrice:string",
                             7: "volume:string", 8: "amount:string", 9: "windowEnd:int64"},
    "PublicDealsV3Api": {1: "deals:[PublicDealsV3ApiItem]", 2: "eventType:string"},
    "PublicDealsV3ApiItem": {1: "price:string", 2: "quantity:string", 3: "tradeType:int32", 4: "time:int64"},
    "PublicIncreaseDepthsV3Api": {1: "asks:[PublicIncreaseDepthV3ApiItem]", 2: "bids:[PublicIncreaseDepthV3ApiItem]",
                                  3: "eventType:string", 4: "version:string"},
    "PublicIncreaseDepthV3ApiItem": {1: "price:string", 2: "quantity:string"},
    "PublicIncreaseDepthsBatchV3Api": {1: "items:[PublicIncreaseDepthsV3Api]", 2: "eventType:string"},
    "PublicMiniTickerV3Api": {n: f"{name}:string" for n, name in enumerate(
        ["symbol", "price", "rate", "zonedRate", "high", "low", "volume", "quantity", "lastCloseRate",
         "lastCloseZonedRate", "lastCloseHigh", "lastCloseLow"], 1)},
    "PublicMiniTickersV3Api": {1: "items:[PublicMiniTickerV3Api]"},
    "PrivateAccountV3Api": {1: "vcoinName:string", 2: "coinId:string", 3: "balanceAmount:string",
                            4: "balanceAmountChange:string", 5: "frozenAmount:string",
                            6: "frozenAmountChange:string", 7: "type:string", 8: "time:int64"},
    "PrivateDealsV3Api": {1: "price:string", 2: "quantity:string", 3: "amount:string", 4: "tradeType:int32",
                          5: "isMaker:bool", 6: "isSelfTrade:bool", 7: "tradeId:string", 8: "clientOrderId:string",
                          9: "orderId:string", 10: "feeAmount:string", 11: "feeCurrency:string", 12: "time:int64"},
    "PrivateOrdersV3Api": {1: "id:string", 2: "clientId:string", 3: "price:string", 4: "quantity:string",
                           5: "amount:string", 6: "avgPrice:string", 7: "orderType:int32", 8: "tradeType:int32",
                           9: "isMaker:bool", 10: "remainAmount:string", 11: "remainQuantity:string",
                           12: "lastDealQuantity:string?", 13: "cumulativeQuantity:string",
                           14: "cumulativeAmount:string", 15: "status:int32", 16: "createTime:int64",
                           17: "market:string?", 18: "triggerType:int32?", 19: "triggerPrice:string?",
                           20: "state:int32?", 21: "ocoId:string?", 22: "routeFactor:string?",
                           23: "symbolId:string?", 24: "marketId:string?", 25: "marketCurrencyId:string?",
                           26: "currencyId:string?"},
}
BODIES = [(301, "publicDeals", "PublicDealsV3Api"), (302, "publicIncreaseDepths", "PublicIncreaseDepthsV3Api"),
          (303, "publicLimitDepths", "PublicLimitDepthsV3Api"), (304, "privateOrders", "PrivateOrdersV3Api"),
          (305, "publicBookTicker", "PublicBookTickerV3Api"), (306, "privateDeals", "PrivateDealsV3Api"),
          (307, "privateAccount", "PrivateAccountV3Api"), (308, "publicSpotKline", "PublicSpotKlineV3Api"),
          (309, "publicMiniTicker", "PublicMiniTickerV3Api"), (310, "publicMiniTickers", "PublicMiniTickersV3Api"),
          (311, "publicBookTickerBatch", "PublicBookTickerBatchV3Api"),
          (312, "publicIncreaseDepthsBatch", "PublicIncreaseDepthsBatchV3Api"),
          (313, "publicAggreDepths", "PublicAggreDepthsV3Api"), (314, "publicAggreDeals", "PublicAggreDealsV3Api"),
          (315, "publicAggreBookTicker", "PublicAggreBookTickerV3Api")]

AGGRE_DEALS = "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"


def _describe(field: Any) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.is_repeated
        return f"{field.name}:[{field.message_type.name}]"
    assert not field.is_repeated
    optional = "?" if field.has_presence else ""
    return f"{field.name}:{_TYPES[field.type]}{optional}"


# ---------------------------------------------------------------------- the schema

@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_message_fields_as_protocols_md(name: str) -> None:
    descriptor = getattr(pb, name).DESCRIPTOR
    assert descriptor.full_name == f"fastws.mexc.{name}"
    fields = {f.number: _describe(f) for f in descriptor.fields
              if f.containing_oneof is None or f.containing_oneof.name != "body"}
    assert fields == SCHEMA[name]


def test_wrapper_body_oneof_as_protocols_md() -> None:
    descriptor = pb.PushDataV3ApiWrapper.DESCRIPTOR
    body = descriptor.oneofs_by_name["body"]
    assert [(f.number, f.name, f.message_type and f.message_type.name) for f in body.fields] == BODIES
    assert BODY_FIELDS == tuple(name for _, name, _ in BODIES)
    assert 2 not in descriptor.fields_by_number
    # Every message of the file is named here or in the table: nothing unchecked.
    assert set(descriptor.file.message_types_by_name) == set(SCHEMA)


def test_generated_module_runtime_check() -> None:
    from google.protobuf import runtime_version
    source = open(pb.mexc_push_pb2.__file__).read()
    assert "ValidateProtobufRuntimeVersion(" in source
    assert (runtime_version.MAJOR, runtime_version.MINOR) >= (7, 35)


# ---------------------------------------------------------------------- decode_reference

def test_standard_dict_form() -> None:
    data = encode_push(AGGRE_DEALS, "publicAggreDeals",
                       {"deals": [{"price": "65000.1", "quantity": "0", "tradeType": 2, "time": 2 ** 63 - 1},
                                  {"price": "", "tradeType": -1, "time": -5}],
                        "eventType": "spot@public.aggre.deals.v3.api.pb@100ms"},
                       symbol="BTCUSDT", create_time=0, send_time=1736411507002)
    assert decode_reference(data) == {
        "channel": AGGRE_DEALS, "symbol": "BTCUSDT", "createTime": "0", "sendTime": "1736411507002",
        "publicAggreDeals": {
            "deals": [{"price": "65000.1", "quantity": "0", "tradeType": 2, "time": "9223372036854775807"},
                      {"tradeType": -1, "time": "-5"}],
            "eventType": "spot@public.aggre.deals.v3.api.pb@100ms"}}


def test_inputs_bytes_bytearray_memoryview() -> None:
    data = encode_push("c", "publicBookTicker", {"bidPrice": "1"})
    expected = {"channel": "c", "publicBookTicker": {"bidPrice": "1"}}
    assert decode_reference(data) == decode_reference(bytearray(data)) == expected
    assert decode_reference(memoryview(b"xx" + data)[2:]) == expected


def test_empty_body_is_a_body() -> None:
    assert decode_reference(encode_push("", "publicDeals", {})) == {"publicDeals": {}}


@pytest.mark.parametrize("data", [b"", b"\x0a\x01x", b"\x1a\x00", b"\x10\x05", b"\x08\x01\x30\x00"])
def test_no_body_is_an_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="push without a body"):
        decode_reference(data)


@pytest.mark.parametrize("data", [
    b"\x0a\x05abc",                     # length past the end
    b"\x0a",                            # key without a value
    b"\x30\xff\xff",                    # unterminated varint
    b"\x0a\x02\xff\xfe",                # invalid UTF-8 in channel
    b"\x00\x00",                        # field number 0
    b"\x0f",                            # wire type 7
])
def test_malformed_raises_decode_error(data: bytes) -> None:
    with pytest.raises((DecodeError, UnicodeDecodeError)):
        decode_reference(data)


def test_unknown_fields_ignored() -> None:
    data = encode_push("c", "publicDeals", {"eventType": "e"})
    unknown = b"\x10\x01" + b"\x19" + bytes(8) + b"\xfa\x3f\x01z" + b"\x13\x08\x01\x14" + b"\x25" + bytes(4)
    assert decode_reference(unknown + data + unknown) == decode_reference(data)


def test_last_oneof_field_wins() -> None:
    first = encode_push("a", "publicDeals", {"eventType": "x"})
    second = encode_push("b", "publicAggreDeals", {})
    assert decode_reference(first + second) == {"channel": "b", "publicAggreDeals": {}}


# ---------------------------------------------------------------------- encode_push

def test_encode_push_rejects_unknown_body_field() -> None:
    with pytest.raises(ValueError, match="not a body field"):
        encode_push("c", "channel", {})
    with pytest.raises(json_format.ParseError):
        encode_push("c", "publicDeals", {"nope": 1})


def test_encode_push_accepts_int64_as_int_or_string() -> None:
    as_int = encode_push("c", "publicSpotKline", {"windowStart": -(2 ** 63)})
    as_str = encode_push("c", "publicSpotKline", {"windowStart": str(-(2 ** 63))})
    assert as_int == as_str
    assert decode_reference(as_int)["publicSpotKline"] == {"windowStart": "-9223372036854775808"}


# ---------------------------------------------------------------------- property tests

_FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(wrappers())
def test_round_trip_through_encode_push(message: Any) -> None:
    expected = json_format.MessageToDict(message, preserving_proto_field_name=True)
    data = message.SerializeToString()
    decoded = decode_reference(data)
    assert decoded == expected
    body = message.WhichOneof("body")
    kwargs = {k: decoded[f] for k, f in [("symbol", "symbol"), ("symbol_id", "symbolId")] if f in decoded}
    kwargs.update({k: int(decoded[f]) for k, f in [("create_time", "createTime"), ("send_time", "sendTime")]
                   if f in decoded})
    again = encode_push(decoded.get("channel", ""), body, decoded[body], **kwargs)
    assert decode_reference(again) == decoded


@_FAST
@given(push_bytes())
def test_wire_helpers_round_trip(data: bytes) -> None:
    assert serialize_wire(parse_wire(data)) == data


@_FAST
@given(mutated_push_bytes())
def test_mutated_bytes_decode_or_fail_cleanly(data: bytes) -> None:
    try:
        decoded = decode_reference(data)
    except (DecodeError, UnicodeDecodeError, ValueError):
        return
    assert isinstance(decoded, dict) and any(field in decoded for field in BODY_FIELDS)
