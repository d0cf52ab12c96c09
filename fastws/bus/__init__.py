"""The NATS bus: collectors publish raw frames, consumers feed them to the same adapters.

Optional: needs the ``nats`` extra (``pip install 'fastws[nats]'``: nats-py and the
``nats-server`` binary). :mod:`fastws.bus.subjects` (the wire format both sides share)
imports nothing beyond the standard library; the other modules import nats-py only
where they talk to NATS, so ``import fastws`` never needs it.

Publishing side:

- :mod:`fastws.bus.publisher`: ``BusPublisher``, the frame core's HPUB frames handed to
  a nats-py connection once per batch (the core part is ``fastws._core.FramePublisher``);
- :mod:`fastws.bus.storage`: the exchange's JetStream stream, created or checked;
- :mod:`fastws.bus.fleet`: ``FleetMember``, stream ownership by leases in a key-value bucket;
- :mod:`fastws.bus.collector`: ``Collector``, an adapter publishing (``fastws collect``).
"""
