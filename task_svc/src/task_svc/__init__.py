"""The task service: a user's tasks, their tags and due times, search, and series occurrences.

Reads top-down: unit (server wiring), handlers (gRPC and events), domain
(rules, free of I/O), storage (the repository), migrations.
"""
