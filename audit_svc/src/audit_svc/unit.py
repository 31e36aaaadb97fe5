"""Server wiring: the audit service as a unit any runtime can host.

It records every event of every topic in its user's activity log, serves
AuditService, and prunes entries past TODO_AUDIT_RETENTION_DAYS (default: keep
forever). It runs as the database role RUNTIME_ROLE, which may only read and
append to the log (see migrations/versions/0001_activity_log.py for the grants
and triggers, and for what a server deployment's administrator sets up).
"""

from __future__ import annotations

from pathlib import Path

import grpc

from audit_svc.handlers import APP_ID, ActivityPruner, ActivityRecorder, AuditServicer
from audit_svc.settings import AuditSettings
from todo_contracts import topics
from todo_contracts.audit.v1 import audit_pb2, audit_pb2_grpc
from todo_kit.paging import PageTokens
from todo_kit.runtime.port import ServiceUnit, Subscription, UnitContext, UnitWiring

SERVICE_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
RUNTIME_ROLE = "todo_audit_writer"


async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
    """Adds AuditService; records every event type of every topic; prunes past the audit retention."""
    settings = AuditSettings.from_env()
    servicer = AuditServicer(context.db, PageTokens.for_settings(context.settings))
    audit_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server)
    recorder = ActivityRecorder(context.db)
    # One subscription per topic, every event type of it (an empty filter).
    subscriptions = [Subscription(topic=topic.name, handler=recorder) for topic in topics.ALL_TOPICS]
    return UnitWiring(
        subscriptions=subscriptions,
        pruners={"activity_log": ActivityPruner(context.db, settings.retention)},
        on_stop=[servicer.close],
    )


unit = ServiceUnit(
    app_id=APP_ID,
    database="todo_audit",
    migrations=Path(__file__).parent / "migrations",
    service_names=(SERVICE_NAME,),
    register=register,
    runtime_role=RUNTIME_ROLE,
)
