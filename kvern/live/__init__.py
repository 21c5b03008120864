"""Live replay (docs/architecture.md §8): send a trace to an OpenAI-compatible server, record what it
cached and how fast it answered, and reconcile that with the simulation, request by request.

``replay.run_live`` is the entry point (``kvern replay TRACE --backend URL``). The modules, in
the order data flows: ``bodies`` (request bodies per trace row), ``pacing`` (send times),
``client`` (one streamed request, retries), ``runner`` (the send loop), ``sink``
(``live.parquet``), ``prometheus`` (server-side counters), ``reconcile`` (prediction against
observation), ``chart`` and ``command`` (the console summary).
"""
