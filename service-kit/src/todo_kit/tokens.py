"""`make token USER=alice`: prints a bearer token for a user of the local system.

It reads the same settings as the host (TODO_DATA_DIR, TODO_JWT_SECRET[_FILE],
TODO_TOKEN_MAX_LIFETIME_HOURS), so the token is signed with the key the host
checks. It never creates a key: the host makes the data folder's key at its
first start, and a key made here would sign tokens the host refuses.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from todo_kit.auth import NoSigningKey, issue_token, signing_key_for
from todo_kit.config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    """Prints a token signed with this data folder's (or the configured) key; 2 when there is none or input is bad."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("user", help="the user id the token is for, e.g. alice")
    parser.add_argument("--hours", type=float, default=24.0, help="how long the token is valid (default 24)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        key = signing_key_for(settings, create=False)
        token = issue_token(key, args.user, ttl=timedelta(hours=args.hours), max_lifetime=settings.token_max_lifetime)
    except NoSigningKey as exc:
        print(f"token: start the system once with `make up` first ({exc})", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"token: {exc.code}", file=sys.stderr)
        return 2
    except (ValueError, OverflowError) as exc:
        print(f"token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
