"""WebSocketConfig validation and create_websocket_config."""
import pytest

from fastws import WebSocketConfig, create_websocket_config


def test_defaults_are_valid() -> None:
    config = create_websocket_config("wss://example.invalid/ws")
    assert config.url == "wss://example.invalid/ws"
    assert config.pong_timeout <= config.ping_interval
    assert config.enable_compression is False


def test_overrides_apply() -> None:
    config = create_websocket_config("ws://127.0.0.1:1/x", timeout=2.5, max_reconnect_attempts=0)
    assert config.timeout == 2.5
    assert config.max_reconnect_attempts == 0


@pytest.mark.parametrize("field,value", [
    ("timeout", 0), ("timeout", -1.0), ("timeout", float("nan")), ("ping_interval", float("inf")),
    ("reconnect_delay", 0), ("reconnect_backoff", 0.5), ("reconnect_jitter", 1.5),
    ("max_reconnect_attempts", -1), ("max_reconnect_attempts", 1.5), ("max_reconnect_attempts", True),
    ("pong_timeout", 30.0), ("stale_timeout", 0), ("max_connection_age", -5),
    ("max_messages_per_second", 0), ("max_frame_size", 0), ("subscription_batch_size", 0),
    ("max_pending_subscriptions", -1), ("reconnect_delay", 100.0), ("timeout", "10"),
])
def test_bad_values_raise_clear_errors(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        create_websocket_config("ws://127.0.0.1:1/x", **{field: value})


def test_bad_url() -> None:
    with pytest.raises(ValueError, match="url"):
        WebSocketConfig(url="http://example.invalid")


def test_unknown_override() -> None:
    with pytest.raises(TypeError, match="no_such_field"):
        create_websocket_config("ws://127.0.0.1:1/x", no_such_field=1)


def test_compression_can_be_enabled() -> None:
    config = create_websocket_config("ws://127.0.0.1:1/x", enable_compression=True)
    assert config.enable_compression is True


def test_none_disables_optional_checks() -> None:
    config = create_websocket_config("ws://127.0.0.1:1/x", stale_timeout=None, max_connection_age=None)
    assert config.stale_timeout is None and config.max_connection_age is None
