"""The NATS bus: collectors publish raw frames, consumers feed them to the same adapters.

Optional: needs the ``nats`` extra (``pip install 'fastws[nats]'``: nats-py and the
``nats-server`` binary). :mod:`fastws.bus.subjects` (the wire format both sides share)
imports nothing beyond the standard library.
"""
