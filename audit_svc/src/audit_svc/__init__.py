"""The audit service: every event of every topic, appended once to its user's hash-chained activity log.

Reads top-down: unit (server wiring), handlers (gRPC, events), domain (summaries
and the hash chain, free of I/O), storage, migrations.
"""
