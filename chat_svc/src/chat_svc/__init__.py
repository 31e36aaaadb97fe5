"""The chat service: English in, the user's tasks changed through the other services, plain English out.

Reads top-down: unit (server wiring), handlers (gRPC), interpret (what a message
means, offline and deterministic), domain (what to do and say about it, free of
I/O), acting (calls to the other services as the user), storage, migrations.
"""
