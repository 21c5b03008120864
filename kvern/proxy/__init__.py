"""``kvern proxy``: a transparent proxy in front of an OpenAI-compatible server that records
every completion and watches prefix-cache reuse as it happens (docs/proxy.md).

In data-flow order:

- ``settings``: the ``proxy:`` config with the flags applied, checked before anything starts.
- ``server``: forwarding. Each request goes upstream unchanged; the answer comes back chunk by
  chunk as it arrives; completions are read on the side by ``sse`` (streams) and become a
  ``record.Exchange``.
- ``tap``: once the client has its answer, the exchange is numbered, written by ``recorder``
  (the log: fsync'd every second, rotated, zstd-compressed), measured by ``stats`` (latency
  histograms) and offered to ``feed``, the bounded pipe to the analytics worker.
- ``worker`` (a separate process): ingest's own conversion of each line (template,
  normalization, block keys), the simulator fed one request at a time (``OnlineCache``), the
  hot-prefix counter (``trie``), rows and per-minute rollups in ``store`` (SQLite). It catches
  up from the log when the pipe was full.
- ``endpoints``: ``/health``, ``/analytics``, ``/trie/visualize``, ``/metrics``, read from the
  store and the in-memory stats.
- ``run``: ``run_proxy``, the one entry point: start all of it, stop it cleanly on a signal.
"""

from kvern.proxy.run import run_proxy
from kvern.proxy.settings import ProxySettings, resolve

__all__ = ["ProxySettings", "resolve", "run_proxy"]
