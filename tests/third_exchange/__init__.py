"""A third exchange, written only in the tests: it plugs into fastws through the registry.

Its protocol (our own): the client sends ``{"op": "sub"|"unsub", "args": [...],
"req": N}``; the server answers ``{"req": N, "ok": true}`` or ``{"req": N, "ok":
false, "err": "..."}`` and pushes ``{"ch": "<stream>", "seq": N, "ts": <ms>, "px":
"...", "qty": "..."}`` on ``/feed``. Streams are ``trades.<SYMBOL>``.

Modules, as an exchange package lays them out: ``client`` (the adapter on
``BaseWebSocketInterface``), ``simulator`` (on the generic ``FeedServer``),
``replay`` and ``compliance`` profiles, ``fixtures`` (a pytest plugin) and
``entry`` (the registry entry). ``tests/integration/test_third_exchange.py``
registers it through a real entry point.
"""
