"""The notification service: a reminder that fires reaches its user in-app, live, by webhook and by e-mail.

Reads top-down: unit (server wiring), handlers (gRPC, reminder events, delivery
jobs), domain (what to tell whom, through which channel, when; free of I/O),
channels (webhook and e-mail senders), storage, migrations.
"""
