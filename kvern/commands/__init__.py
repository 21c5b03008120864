"""The commands: one module each, between the CLI's flags and the packages below.

Every command that writes a report runs on one skeleton (``common.run_and_report``):
load the trace → run → on Ctrl-C keep what finished → write → show. ``kvern/cli.py`` only
declares options and calls a function here; nothing below this package knows about flags.

``ingest`` · ``simulate`` (replay, compare) · ``sweep`` · ``live`` (replay --backend) ·
``gate`` · ``analyze``.
"""
