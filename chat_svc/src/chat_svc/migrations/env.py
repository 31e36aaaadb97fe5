"""Alembic environment of the chat service (the kit runs it on the async engine)."""

from todo_kit.migration_env import run

run()
