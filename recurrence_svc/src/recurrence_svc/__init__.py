"""The recurrence engine: next occurrences of recurring tasks, and rule previews.

Reads top-down: unit (server wiring), handlers (gRPC, events, jobs), domain
(which occurrence comes next, free of I/O), storage, migrations.
"""
