"""`todo-serve <app_id>`: one service unit on the runtime TODO_RUNTIME names, the entry point of every service image.

  TODO_RUNTIME=kafka  -> todo_kit.kafka_host (events on Kafka, jobs in the unit's database, direct gRPC commands)
  TODO_RUNTIME=dapr   -> todo_kit.dapr_host (beside a Dapr sidecar), imported only when chosen

Any other value (or none) exits 2 with a message: a container must say which runtime it runs on. The hosts' own
exit codes and signals hold (SIGTERM or SIGINT = graceful stop, a bad setting exits naming it).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence

RUNTIMES = {"kafka": "todo_kit.kafka_host", "dapr": "todo_kit.dapr_host"}
"""TODO_RUNTIME value -> the host module whose main([app_id]) runs the unit."""

USAGE = "usage: todo-serve <app_id>   (TODO_RUNTIME=kafka or dapr chooses the runtime)"


def host_main(runtime: str) -> Callable[[Sequence[str]], int]:
    """The main() of the host module of a runtime; SystemExit(2) naming what is missing or unknown."""
    module_name = RUNTIMES.get(runtime)
    if module_name is None:
        shown = repr(runtime) if runtime else "unset"
        raise SystemExit(f"todo-serve: TODO_RUNTIME must be one of {', '.join(RUNTIMES)}, got {shown}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        # Only the host module itself being absent is this message; a missing dependency of it names itself.
        if missing.name != module_name:
            raise
        raise SystemExit(
            f"todo-serve: TODO_RUNTIME={runtime} needs the module {module_name}, which is not installed"
        ) from None
    entry: Callable[[Sequence[str]], int] = module.main
    return entry


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of `todo-serve <app_id>`; returns the host's exit code (2 for a usage or runtime error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if env is None else env
    if len(args) != 1 or args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 0 if args in (["-h"], ["--help"]) else 2
    try:
        run = host_main(environ.get("TODO_RUNTIME", "").strip())
    except SystemExit as error:
        print(error.code, file=sys.stderr)
        return 2
    return run([args[0]])


if __name__ == "__main__":
    sys.exit(main())
