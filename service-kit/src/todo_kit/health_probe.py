"""`python -m todo_kit.health_probe [host:port] [service]`: exit 0 when grpc.health.v1 reports SERVING, else 1.

The container images' HEALTHCHECK (Kubernetes uses its native gRPC probe on the same port instead). It is a few
lines on the grpcio already in the service's environment, so an image needs no separate probe binary. The default
address is 127.0.0.1:$TODO_GRPC_PORT (50051); the default service "" is the server's overall health.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

TIMEOUT_SECONDS = 3.0


def check(address: str, service: str = "", timeout: float = TIMEOUT_SECONDS) -> str:
    """The health status name the server at address reports for service (e.g. "SERVING"), or why none came."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            return f"{error.code().name}: {error.details()}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: prints the status and returns 0 only for SERVING."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 2 or any(a.startswith("-") for a in args):
        print("usage: python -m todo_kit.health_probe [host:port] [service]", file=sys.stderr)
        return 2
    address = args[0] if args else f"127.0.0.1:{os.environ.get('TODO_GRPC_PORT', '50051')}"
    status = check(address, args[1] if len(args) > 1 else "")
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
