"""Ingest: request logs -> the canonical trace (docs/architecture.md §1-3).

Public entry points:
- ``pipeline.load_trace(path, cfg, ...)``: a raw log (any format, .gz/.zst) or an ingested
  Parquet -> ``trace.Trace``, through the ingest cache.
- ``tokenizer.get_tokenizer``, ``tokenizer.tokenizer_for_model``, ``tokenizer.default_tokenizer_dir``.
- ``stats.infinite_cache_hits(trace)`` and ``stats.summarize(trace)``.

Modules: ``source`` (open, decompress, split lines), ``readers/`` (one per format), ``records``
(what a reader returns), ``normalize``, ``chatml`` + ``encode`` (template and fast tokenizing),
``blocks`` (chained keys), ``trace`` (schema, Parquet), ``cache`` (ingest cache keys).
"""
