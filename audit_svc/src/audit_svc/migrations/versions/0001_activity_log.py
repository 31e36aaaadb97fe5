"""The append-only, hash-chained activity log, its chain heads, the outbox and inbox, and the runtime role.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Run as the database owner (hosts and `python -m todo_kit.migrate audit_svc`
migrate as the URL's role); the service itself runs as the runtime role
(audit_svc.unit.RUNTIME_ROLE), which this migration creates NOLOGIN if it does
not exist. Where the owner may not create roles, an administrator creates it
beforehand (`CREATE ROLE todo_audit_writer NOLOGIN`) and, in a server
deployment where the service logs in as its own role, makes that login role a
member (`GRANT todo_audit_writer TO <login role>`); the login role must not
own the tables.

What makes the log append-only, whoever asks:
- the runtime role may only SELECT and INSERT entries (UPDATE, DELETE and
  TRUNCATE revoked from it and from PUBLIC);
- a row trigger refuses UPDATE and DELETE and a statement trigger refuses
  TRUNCATE, also for the owner, and both are ENABLE ALWAYS, so a session in
  replication mode (session_replication_role = replica) cannot skip them;
- pruning deletes only through prune_activity(), a SECURITY DEFINER function
  of the owner that removes a prefix of one user's chain recorded before a
  cut-off and moves the chain's anchor in the same transaction. The trigger
  lets a DELETE through only when it runs as the table's owner with the
  setting todo_audit.pruning on, which only that function's own SET clause
  turns on; the runtime role can call it but never act as the owner.
Only the owner can get past this (ALTER TABLE ... DISABLE TRIGGER), and
VerifyLog then finds what was changed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from todo_kit.db import migration_runtime_role
from todo_kit.messaging import create_messaging_indexes, create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    role = migration_runtime_role()
    schema = op.get_bind().scalar(sa.text("SELECT quote_ident(current_schema())"))
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
            CREATE ROLE {role} NOLOGIN;
          END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
          NULL;  -- another database's migration created it at the same moment
        END $$
        """
    )
    op.execute(
        f"""
        CREATE TABLE {schema}.activity_log (
          user_id text NOT NULL,
          sequence bigint NOT NULL CHECK (sequence >= 1),
          event_id text NOT NULL,
          event_type text NOT NULL,
          source text NOT NULL,
          task_id text NOT NULL,
          summary text NOT NULL,
          payload_json text NOT NULL,  -- text, not jsonb: the hash covers these exact characters
          occur_time timestamptz NOT NULL,
          record_time timestamptz NOT NULL,
          previous_hash bytea NOT NULL CHECK (octet_length(previous_hash) = 32),
          entry_hash bytea NOT NULL CHECK (octet_length(entry_hash) = 32),
          PRIMARY KEY (user_id, sequence),
          CONSTRAINT activity_log_event_once UNIQUE (event_id)
        )
        """
    )
    # The listing orders by (occur_time, sequence) within one user, newest first
    # by default, and pages by that keyset; each filter has an index that yields
    # exactly that order, so a page reads about page_size index entries whatever
    # the log's size (1,000,000 entries of one user included):
    # - no filter, or only a time range: (user_id, occur_time, sequence);
    # - a task (with or without types and range): (user_id, task_id, occur_time, sequence),
    #   the types checked on the task's few entries;
    # - event types (with or without range): (user_id, event_type, occur_time, sequence),
    #   one ordered scan per type merged by the query (storage.list_entries).
    # The primary key (user_id, sequence) serves appends, VerifyLog and pruning.
    op.execute(f"CREATE INDEX activity_log_by_time ON {schema}.activity_log (user_id, occur_time, sequence)")
    op.execute(f"CREATE INDEX activity_log_by_task ON {schema}.activity_log (user_id, task_id, occur_time, sequence)")
    op.execute(
        f"CREATE INDEX activity_log_by_type ON {schema}.activity_log (user_id, event_type, occur_time, sequence)"
    )
    op.execute(
        f"""
        CREATE TABLE {schema}.chain_heads (
          user_id text PRIMARY KEY,
          last_sequence bigint NOT NULL CHECK (last_sequence >= 0),
          last_hash bytea NOT NULL CHECK (octet_length(last_hash) = 32),
          pruned_through_sequence bigint NOT NULL DEFAULT 0,
          anchor_hash bytea NOT NULL DEFAULT '\\x{"00" * 32}'::bytea CHECK (octet_length(anchor_hash) = 32),
          update_time timestamptz NOT NULL DEFAULT now(),
          CHECK (pruned_through_sequence BETWEEN 0 AND last_sequence)
        )
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION {schema}.activity_log_refuse_change() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
          IF TG_OP = 'DELETE' AND current_setting('todo_audit.pruning', true) = 'on'
             AND current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID) THEN
            RETURN OLD;  -- inside prune_activity()
          END IF;
          RAISE EXCEPTION 'the activity log is append-only: % is refused', TG_OP
            USING HINT = 'entries are only ever added; old ones go only through retention (prune_activity)';
        END $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER activity_log_append_only BEFORE UPDATE OR DELETE ON {schema}.activity_log
        FOR EACH ROW EXECUTE FUNCTION {schema}.activity_log_refuse_change()
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER activity_log_no_truncate BEFORE TRUNCATE ON {schema}.activity_log
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.activity_log_refuse_change()
        """
    )
    op.execute(f"ALTER TABLE {schema}.activity_log ENABLE ALWAYS TRIGGER activity_log_append_only")
    op.execute(f"ALTER TABLE {schema}.activity_log ENABLE ALWAYS TRIGGER activity_log_no_truncate")
    op.execute(
        f"""
        CREATE FUNCTION {schema}.prune_activity(p_user_id text, p_through bigint, p_before timestamptz)
        RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp
        SET todo_audit.pruning = 'on'
        AS $$
        DECLARE
          head {schema}.chain_heads%ROWTYPE;
          through bigint;
          young bigint;
          anchor bytea;
          deleted bigint;
        BEGIN
          SELECT * INTO head FROM {schema}.chain_heads WHERE user_id = p_user_id FOR UPDATE;
          IF NOT FOUND THEN
            RETURN 0;
          END IF;
          -- A prefix of at most 10,000 entries, never past the newest.
          through := LEAST(p_through, head.last_sequence, head.pruned_through_sequence + 10000);
          -- Only entries recorded before the cut-off (never one in the future) go.
          SELECT min(sequence) INTO young FROM {schema}.activity_log
           WHERE user_id = p_user_id AND sequence > head.pruned_through_sequence AND sequence <= through
             AND record_time >= LEAST(p_before, now());
          IF young IS NOT NULL THEN
            through := young - 1;
          END IF;
          IF through <= head.pruned_through_sequence THEN
            RETURN 0;
          END IF;
          SELECT entry_hash INTO anchor FROM {schema}.activity_log WHERE user_id = p_user_id AND sequence = through;
          IF NOT FOUND THEN
            RAISE EXCEPTION 'entry % of the log is missing; nothing pruned', through;
          END IF;
          DELETE FROM {schema}.activity_log
           WHERE user_id = p_user_id AND sequence > head.pruned_through_sequence AND sequence <= through;
          GET DIAGNOSTICS deleted = ROW_COUNT;
          UPDATE {schema}.chain_heads SET pruned_through_sequence = through, anchor_hash = anchor, update_time = now()
           WHERE user_id = p_user_id;
          RETURN deleted;
        END $$
        """
    )
    create_messaging_tables()
    create_messaging_indexes()
    # What the runtime role may do, and nothing else.
    op.execute(f"REVOKE ALL ON {schema}.activity_log, {schema}.chain_heads FROM PUBLIC")
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.activity_log FROM PUBLIC, {role}")
    op.execute(f"REVOKE ALL ON FUNCTION {schema}.prune_activity(text, bigint, timestamptz) FROM PUBLIC")
    op.execute(f"REVOKE ALL ON FUNCTION {schema}.activity_log_refuse_change() FROM PUBLIC")
    op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    op.execute(f"GRANT SELECT, INSERT ON {schema}.activity_log TO {role}")
    # The anchor moves only through prune_activity(); appends move the head.
    op.execute(f"GRANT SELECT, INSERT ON {schema}.chain_heads TO {role}")
    op.execute(f"GRANT UPDATE (last_sequence, last_hash, update_time) ON {schema}.chain_heads TO {role}")
    op.execute(f"GRANT EXECUTE ON FUNCTION {schema}.prune_activity(text, bigint, timestamptz) TO {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.outbox TO {role}")
    # UPDATE too: pruning picks its rows FOR UPDATE.
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.processed_events TO {role}")
    op.execute(
        f"""
        DO $$ BEGIN
          EXECUTE format('GRANT USAGE ON SEQUENCE %s TO {role}', pg_get_serial_sequence('{schema}.outbox', 'seq'));
        END $$
        """
    )


def downgrade() -> None:
    schema = op.get_bind().scalar(sa.text("SELECT quote_ident(current_schema())"))
    op.execute(f"DROP FUNCTION {schema}.prune_activity(text, bigint, timestamptz)")
    for table in ("processed_events", "outbox", "chain_heads", "activity_log"):
        op.execute(f"DROP TABLE {schema}.{table}")
    op.execute(f"DROP FUNCTION {schema}.activity_log_refuse_change()")
    # The role stays: it is the server's, and other databases of the service may use it.
