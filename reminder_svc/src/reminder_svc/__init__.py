"""The reminder service: reminders planned from tasks' rules, fired once each, to the second.

Reads top-down: unit (server wiring), handlers (gRPC, task events, fired
jobs), domain (what to remind of when, free of I/O), storage, migrations.
"""
