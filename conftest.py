"""Test-wide plugins: the service kit's fixtures (real PostgreSQL, hosts, tokens)."""

pytest_plugins = ["todo_kit.testing"]
