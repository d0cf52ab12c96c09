"""Connecting through a proxy: what failed, said with the proxy's credentials hidden.

picows opens the tunnel (HTTP CONNECT itself, SOCKS through python-socks) and
raises their errors as they come; ``proxy_failure`` turns any of them into a
``ProxyFailedError`` that names the proxy (redacted), says which step failed
and whether another attempt can help.
"""
from __future__ import annotations

import re
from typing import Optional
from urllib.parse import unquote, urlsplit

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
# What python-socks raises when the proxy closes during the SOCKS handshake;
# not exported by the package.
from python_socks._errors import IncompleteReadError

from fastws.backoff import is_retryable
from fastws.config import ProxyURL, redact_proxy_url
from fastws.errors import ProxyFailedError

__all__ = ["proxy_failure", "through_proxy"]

# picows words an HTTP CONNECT refusal as "... rejected connection with status 407".
_HTTP_STATUS = re.compile(r"\bstatus (\d{3})\b")

# SOCKS5 reply 2: "connection not allowed by ruleset", the proxy's configuration.
_SOCKS_NOT_ALLOWED = 2

# Passwords at least this long are also replaced wherever they appear in an error's text.
_SCRUBBED_LENGTH = 4

# HTTP statuses that mean "wrong or missing credentials".
_CREDENTIALS_REFUSED = frozenset({401, 407})

# CONNECT answers another try may change: request timeout, too many requests.
_RETRYABLE_4XX = frozenset({408, 429})


def through_proxy(proxy: Optional[str]) -> str:
    """`` through the proxy <redacted>`` to append to a message, or ``""`` without one."""
    return f" through the proxy {redact_proxy_url(proxy)}" if proxy is not None else ""


def proxy_failure(exc: Exception, proxy: ProxyURL, exchange: str, url: str, reached: bool) -> ProxyFailedError:
    """The ``ProxyFailedError`` for a connection attempt through ``proxy`` that raised ``exc``.

    Args:
        exc: What picows (or the socket factory) raised.
        proxy: The configured proxy.
        exchange: The exchange's name, for the message.
        url: The WebSocket URL the tunnel was for.
        reached: Whether the TCP connection to the proxy was made.
    """
    detail = _scrub(f"{type(exc).__name__}: {exc}", proxy)
    target = urlsplit(url)
    where = f"{target.hostname}:{target.port or (443 if target.scheme == 'wss' else 80)}"
    shown = proxy.redacted
    if not reached:
        return ProxyFailedError(f"{exchange}: cannot reach the proxy {shown}: {detail}", shown, "connect",
                                retryable=is_retryable(exc))
    if isinstance(exc, (ProxyError, ProxyConnectionError, ProxyTimeoutError, IncompleteReadError)):
        status, credentials = _refusal(exc)
        hint = " (wrong or missing credentials)" if credentials else ""
        retryable = not credentials and (status is None or _retryable_status(status))
        return ProxyFailedError(f"{exchange}: the proxy {shown} did not open a tunnel to {where}{hint}: {detail}",
                                shown, "tunnel", status, retryable)
    return ProxyFailedError(f"{exchange}: connecting to {url} through the proxy {shown} failed: {detail}",
                            shown, "through", retryable=is_retryable(exc))


def _refusal(exc: Exception) -> tuple[Optional[int], bool]:
    """The proxy's status in a refusal (HTTP status or SOCKS reply code), and whether it refused credentials."""
    text = str(exc)
    match = _HTTP_STATUS.search(text)
    if match is not None:
        status = int(match.group(1))
        # 407 is the standard answer; tinyproxy answers a CONNECT with bad credentials 401.
        return status, status in _CREDENTIALS_REFUSED
    code = getattr(exc, "error_code", None)
    # python-socks: "Username and password authentication failure", or "No
    # acceptable authentication methods were offered" (the proxy wants some).
    credentials = "authentication" in text.lower()
    return (int(code) if isinstance(code, int) else None), credentials


def _retryable_status(status: int) -> bool:
    if status < 100:     # a SOCKS reply code
        return status != _SOCKS_NOT_ALLOWED
    return not 400 <= status < 500 or status in _RETRYABLE_4XX


def _scrub(text: str, proxy: ProxyURL) -> str:
    """``text`` with the proxy URL and its user information replaced by their redacted forms.

    No error we know of quotes them; this keeps it so for errors we do not know.
    """
    text = text.replace(str(proxy), proxy.redacted)
    password = urlsplit(proxy).password
    if password and len(password) >= _SCRUBBED_LENGTH:   # shorter ones would mangle the text, not hide much
        for secret in {password, unquote(password)}:
            text = text.replace(secret, "***")
    return text
