"""`make token USER=alice`: prints a bearer token for a user of the local system."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings


def main(argv: list[str] | None = None) -> int:
    """Prints a token signed with this data folder's (or the configured) key."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("user", help="the user id the token is for, e.g. alice")
    parser.add_argument("--hours", type=float, default=24.0, help="how long the token is valid (default 24)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        token = issue_token(signing_key_for(settings), args.user, ttl=timedelta(hours=args.hours))
    except ValueError as exc:
        print(f"token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
