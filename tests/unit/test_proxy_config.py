"""The ``proxy`` setting: validation, redaction, and how proxy failures are classified."""
from __future__ import annotations

import dataclasses
import ssl

import pytest
from python_socks import ProxyError

from exchanges.binance import binance_config
from exchanges.mexc import mexc_config
from fastws import ProxyFailedError, create_websocket_config
from fastws.backoff import is_retryable
from fastws.client.proxy import proxy_failure
from fastws.config import ProxyURL, redact_proxy_url

SECRET = "s3cr3t-pw"
URL = "wss://stream.example.org:9443/ws"


@pytest.mark.parametrize("proxy", ["http://127.0.0.1:3128", "https://proxy.example.org:443",
                                   "socks4://10.0.0.1:1080", f"socks5://bob:{SECRET}@[::1]:1080",
                                   "http://bob:p%40ss%3Aw%2Frd@proxy:8080/"])
def test_valid_proxies_are_kept_as_given(proxy: str) -> None:
    config = create_websocket_config(URL, proxy=proxy)
    assert isinstance(config.proxy, ProxyURL) and config.proxy == proxy and str(config.proxy) == proxy


@pytest.mark.parametrize("proxy, says", [
    (f"ftp://bob:{SECRET}@h:21", "scheme must be one of http, https, socks4, socks5"),
    (f"socks5h://bob:{SECRET}@h:1080", "scheme must be one of"),
    (f"bob:{SECRET}@h:1080", "scheme must be one of"),
    (f"socks5://bob:{SECRET}@h", "needs a port"),
    (f"http://bob:{SECRET}@h:0", "needs a port"),
    (f"http://bob:{SECRET}@h:70000", "invalid host or port"),
    (f"http://bob:{SECRET}@h:port", "invalid host or port"),
    (f"http://bob:{SECRET}@[::1:8080", "invalid host or port"),
    (f"http://bob:{SECRET}@:8080", "has no host name"),
    (f"http://bob:{SECRET}@h:8080/path", "no path, query or fragment"),
    (f"http://bob:{SECRET}@h:8080?x=1", "no path, query or fragment"),
    (f"http://bob:{SECRET}@h:8080#top", "no path, query or fragment"),
    (f"http://bob:{SECRET} @h:8080", "whitespace"),
    ("socks5://bob@h:1080", "a user name needs a password"),
])
def test_bad_proxies_are_refused_without_showing_the_password(proxy: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        create_websocket_config(URL, proxy=proxy)
    assert says in str(caught.value)
    assert SECRET not in str(caught.value) and caught.value.__cause__ is None


def test_a_proxy_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="proxy must be a URL string"):
        create_websocket_config(URL, proxy=("127.0.0.1", 1080))


@pytest.mark.parametrize("url, redacted", [
    (f"socks5://bob:{SECRET}@127.0.0.1:1080", "socks5://***@127.0.0.1:1080"),
    ("socks5://bob@127.0.0.1:1080", "socks5://***@127.0.0.1:1080"),
    (f"http://a@b:{SECRET}@h:1/x?y#z", "http://***@h:1/x?y#z"),       # the last @ ends the user information
    ("http://127.0.0.1:3128", "http://127.0.0.1:3128"),
    (f"bob:{SECRET}@h:1", "***@h:1"),
    ("", ""),
])
def test_redaction_hides_the_whole_user_information(url: str, redacted: str) -> None:
    assert redact_proxy_url(url) == redacted


def test_repr_of_every_config_shows_the_proxy_redacted() -> None:
    proxy = f"socks5://bob:{SECRET}@127.0.0.1:1080"
    for config in (create_websocket_config(URL, proxy=proxy), binance_config(URL, proxy=proxy),
                   mexc_config(URL, proxy=proxy)):
        assert config.proxy == proxy
        text = repr(config)
        assert "proxy='socks5://***@127.0.0.1:1080'" in text and SECRET not in text and "bob" not in text
        changed = dataclasses.replace(config, timeout=3.0)
        assert isinstance(changed.proxy, ProxyURL) and SECRET not in repr(changed)
    assert create_websocket_config(URL).proxy is None


def test_proxy_ssl_context_needs_an_https_proxy() -> None:
    context = ssl.create_default_context()
    config = create_websocket_config(URL, proxy="https://127.0.0.1:8443", proxy_ssl_context=context)
    assert config.proxy_ssl_context is context and "proxy_ssl_context" not in repr(config)
    with pytest.raises(ValueError, match="not https://"):
        create_websocket_config(URL, proxy="http://127.0.0.1:3128", proxy_ssl_context=context)
    with pytest.raises(ValueError, match="not https://"):
        create_websocket_config(URL, proxy_ssl_context=context)
    with pytest.raises(TypeError, match="must be an ssl.SSLContext"):
        create_websocket_config(URL, proxy="https://127.0.0.1:8443", proxy_ssl_context="ca.pem")


PROXY = ProxyURL(f"http://bob:{SECRET}@127.0.0.1:3128")


@pytest.mark.parametrize("error, status, retryable, credentials", [
    (ProxyError("HTTP proxy rejected connection with status 407"), 407, False, True),
    (ProxyError("HTTP proxy rejected connection with status 401"), 401, False, True),
    (ProxyError("HTTP proxy rejected connection with status 403"), 403, False, False),
    (ProxyError("HTTP proxy rejected connection with status 429"), 429, True, False),
    (ProxyError("HTTP proxy rejected connection with status 502"), 502, True, False),
    (ProxyError("HTTP proxy closed the connection before replying"), None, True, False),
    (ProxyError("Username and password authentication failure"), None, False, True),
    (ProxyError("No acceptable authentication methods were offered"), None, False, True),
    (ProxyError("Connection not allowed by ruleset", error_code=2), 2, False, False),
    (ProxyError("Connection refused by destination host", error_code=5), 5, True, False),
])
def test_a_refused_tunnel_says_whether_to_retry(error: Exception, status: object, retryable: bool,
                                                credentials: bool) -> None:
    failure = proxy_failure(error, PROXY, "binance", URL, reached=True)
    assert isinstance(failure, ProxyFailedError)
    assert (failure.stage, failure.status, failure.retryable) == ("tunnel", status, retryable)
    assert is_retryable(failure) is retryable
    assert ("wrong or missing credentials" in failure.message) is credentials
    assert failure.message.startswith("binance: the proxy http://***@127.0.0.1:3128 did not open a tunnel "
                                      "to stream.example.org:9443")


def test_failures_before_and_after_the_tunnel() -> None:
    refused = proxy_failure(ConnectionRefusedError(111, "Connect call failed"), PROXY, "binance", URL, reached=False)
    assert (refused.stage, refused.retryable) == ("connect", True)
    assert refused.message.startswith("binance: cannot reach the proxy http://***@127.0.0.1:3128: ")
    bad_certificate = ssl.SSLCertVerificationError(1, "certificate verify failed")
    through = proxy_failure(bad_certificate, PROXY, "binance", URL, reached=True)
    assert (through.stage, through.retryable) == ("through", False)
    assert "through the proxy http://***@127.0.0.1:3128 failed" in through.message


def test_an_error_that_quotes_the_credentials_is_scrubbed() -> None:
    error = OSError(f"cannot use {str(PROXY)} (password {SECRET})")
    failure = proxy_failure(error, PROXY, "binance", URL, reached=False)
    assert SECRET not in str(failure) and "http://***@127.0.0.1:3128" in str(failure)
