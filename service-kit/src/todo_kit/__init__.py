"""The Todo Chatbot service kit.

A service's own code is servicers, event handlers, job handlers, domain and
storage; this package supplies the rest: the gRPC server with health,
reflection, tracing and identity (server), configuration (config), JSON logs
(logs), error mapping (errors), PostgreSQL and migrations (db), the
transactional outbox and idempotent inbox (messaging), and the runtime port
with its embedded implementation (runtime).
"""

import os as _os

# The host starts PostgreSQL's tools as child processes (fork + exec); gRPC's
# fork handlers are of no use to them and only print warnings.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
