"""Why caching breaks and where it pays (docs/architecture.md §9); no printing, results are dataclasses.

- ``divergence``: each request against the nearest earlier prompt it nearly repeats (compiled scan
  over interned block ids): first diverging token, the span that differs, the tokens lost behind it.
- ``fields`` / ``breakers``: the field a divergence falls in (date, uuid, hex id, …), grouped by
  folded pattern, ranked by lost tokens, with the normalization rule that would fold it.
- ``hot_prefixes``: shared prefixes ranked by tokens saved (reuses × depth), radix-compressed.
- ``profile``: requests per model and session, prompt lengths, block reuse distances.
- ``runner`` / ``render`` / ``charts``: what ``kvern gate`` and ``kvern analyze`` run and show.
"""
