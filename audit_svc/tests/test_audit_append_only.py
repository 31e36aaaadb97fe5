"""The log is append-only for real: grants and triggers refuse changes, VerifyLog finds what gets past them, and
pruning removes only an old, intact prefix while the rest stays verifiable."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import sqlalchemy as sa
from audit_fixtures import AuditClient, count_entries, running_audit, task_event
from sqlalchemy.exc import DBAPIError

from audit_svc import domain, handlers
from audit_svc.handlers import ActivityPruner
from audit_svc.unit import RUNTIME_ROLE
from todo_contracts.audit.v1 import audit_pb2
from todo_kit.config import Settings
from todo_kit.zoned import now_utc

CHANGES = [
    "UPDATE activity_log SET summary = 'Completed “Pay rent”' WHERE sequence = 2",
    "DELETE FROM activity_log WHERE sequence = 2",
    "TRUNCATE activity_log",
]


async def record(audit: AuditClient, count: int, user: str = "alice") -> list[domain.Entry]:
    for number in range(count):
        await audit.record(task_event(number, user=user))
    return await audit.entries(user)


async def test_the_service_acts_as_its_runtime_role_not_as_the_owner(audit: AuditClient) -> None:
    async with audit.host.databases["todo_audit"].transaction() as conn:
        acting_as = await conn.scalar(sa.text("SELECT current_user"))
        owner = await conn.scalar(sa.text("SELECT tableowner FROM pg_tables WHERE tablename = 'activity_log'"))
    assert acting_as == RUNTIME_ROLE and owner != RUNTIME_ROLE


@pytest.mark.parametrize("change", CHANGES, ids=["update", "delete", "truncate"])
async def test_the_runtime_role_may_not_update_delete_or_truncate_the_log(audit: AuditClient, change: str) -> None:
    await record(audit, 3)
    with pytest.raises(DBAPIError, match="permission denied for table activity_log"):
        async with audit.host.databases["todo_audit"].transaction() as conn:
            await conn.execute(sa.text(change))
    assert (await audit.verify(audit.alice)).intact


async def test_the_runtime_role_may_not_move_the_chain_anchor_or_delete_by_setting_the_pruning_flag(
    audit: AuditClient,
) -> None:
    await record(audit, 3)
    db = audit.host.databases["todo_audit"]
    with pytest.raises(DBAPIError, match="permission denied for table chain_heads"):
        async with db.transaction() as conn:
            await conn.execute(sa.text("UPDATE chain_heads SET pruned_through_sequence = 2"))
    with pytest.raises(DBAPIError, match="permission denied"):
        async with db.transaction() as conn:
            await conn.execute(sa.text("SELECT set_config('todo_audit.pruning', 'on', true)"))
            await conn.execute(sa.text("DELETE FROM activity_log WHERE sequence = 1"))
    with pytest.raises(DBAPIError, match="must be owner of table activity_log"):
        async with db.transaction() as conn:
            await conn.execute(sa.text("ALTER TABLE activity_log DISABLE TRIGGER activity_log_append_only"))
    assert [e.sequence for e in await audit.entries("alice")] == [1, 2, 3]


@pytest.mark.parametrize("change", CHANGES, ids=["update", "delete", "truncate"])
@pytest.mark.parametrize("replication_mode", [False, True], ids=["origin", "replica"])
async def test_the_owner_may_not_change_the_log_either_even_in_replication_mode(
    audit: AuditClient, change: str, replication_mode: bool
) -> None:
    await record(audit, 3)
    async with audit.owner() as owner:
        with pytest.raises(DBAPIError, match=f"append-only: {change.split()[0]} is refused"):
            async with owner.transaction() as conn:
                if replication_mode:  # what skips ordinary triggers
                    await conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
                await conn.execute(sa.text(change))
        assert await count_entries(owner) == 3
    assert (await audit.verify(audit.alice)).intact


async def tamper(audit: AuditClient, statement: str) -> None:
    """Changes the log behind the service's back: as the owner, with the trigger off for the moment."""
    async with audit.owner() as owner, owner.transaction() as conn:
        await conn.execute(sa.text("ALTER TABLE activity_log DISABLE TRIGGER activity_log_append_only"))
        await conn.execute(sa.text(statement))
        await conn.execute(sa.text("ALTER TABLE activity_log ENABLE ALWAYS TRIGGER activity_log_append_only"))


async def test_a_summary_changed_behind_the_services_back_is_found_by_verify_log(audit: AuditClient) -> None:
    await record(audit, 5)
    await record(audit, 2, user="bob")
    await tamper(
        audit, "UPDATE activity_log SET summary = 'Completed “Pay rent”' WHERE user_id = 'alice' AND sequence = 3"
    )
    verified = await audit.verify(audit.alice)
    assert not verified.intact and verified.first_broken_sequence == 3 and verified.entries_checked == 2
    assert verified.problem == "entry 3 was changed after it was recorded: its content does not match its hash"
    assert (await audit.verify(audit.bob)).intact  # another user's chain is another chain


async def test_an_entry_changed_and_rehashed_behind_the_services_back_is_found(audit: AuditClient) -> None:
    entries = await record(audit, 5)
    changed = dataclasses.replace(entries[2], summary="Deleted “Pay rent”")
    rehashed = domain.entry_hash(changed)
    await tamper(
        audit,
        f"UPDATE activity_log SET summary = 'Deleted “Pay rent”', entry_hash = '\\x{rehashed.hex()}' "
        "WHERE user_id = 'alice' AND sequence = 3",
    )
    verified = await audit.verify(audit.alice)
    assert not verified.intact and verified.first_broken_sequence == 4
    assert "does not follow entry 3" in verified.problem


async def test_a_middle_entry_deleted_behind_the_services_back_is_found(audit: AuditClient) -> None:
    await record(audit, 5)
    await tamper(audit, "DELETE FROM activity_log WHERE user_id = 'alice' AND sequence = 3")
    verified = await audit.verify(audit.alice)
    assert not verified.intact and verified.first_broken_sequence == 3
    assert verified.problem == "entry 3 of the log are missing (after entry 2 comes 4)"


async def test_the_newest_entry_deleted_behind_the_services_back_is_found(audit: AuditClient) -> None:
    await record(audit, 5)
    await tamper(audit, "DELETE FROM activity_log WHERE user_id = 'alice' AND sequence = 5")
    verified = await audit.verify(audit.alice)
    assert not verified.intact and verified.first_broken_sequence == 5 and verified.entries_checked == 4
    assert verified.problem == "entry 5 of the log are missing (the log recorded 5)"


async def test_pruning_keeps_the_rest_verifiable_and_tampering_after_it_is_still_found(audit: AuditClient) -> None:
    old = await record(audit, 5)
    await record(audit, 2, user="bob")
    cutoff = now_utc()
    await record(audit, 4)  # recorded after the cut-off
    pruner = ActivityPruner(audit.host.databases["todo_audit"], retention=timedelta(days=30))
    assert await pruner.prune_before(cutoff) == 7
    verified = await audit.verify(audit.alice)
    assert verified.intact and verified.entries_checked == 4 and verified.pruned_through_sequence == 5
    assert [e.sequence for e in await audit.list_all(audit.alice)] == [9, 8, 7, 6]
    async with audit.owner() as owner, owner.engine.connect() as conn:
        anchor = await conn.scalar(sa.text("SELECT anchor_hash FROM chain_heads WHERE user_id = 'alice'"))
    assert anchor == old[-1].entry_hash
    assert (await audit.verify(audit.bob)).pruned_through_sequence == 2
    assert await pruner.prune_before(cutoff) == 0  # nothing more is that old
    await tamper(audit, "UPDATE activity_log SET summary = 'x' WHERE user_id = 'alice' AND sequence = 8")
    verified = await audit.verify(audit.alice)
    assert not verified.intact and verified.first_broken_sequence == 8 and verified.pruned_through_sequence == 5


async def test_pruning_keeps_entries_that_do_not_check_out(audit: AuditClient) -> None:
    await record(audit, 5)
    await tamper(audit, "UPDATE activity_log SET summary = 'x' WHERE user_id = 'alice' AND sequence = 2")
    pruner = ActivityPruner(audit.host.databases["todo_audit"], retention=timedelta(days=30))
    assert await pruner.prune_before(now_utc()) == 0
    verified = await audit.verify(audit.alice)
    assert verified.first_broken_sequence == 2 and verified.pruned_through_sequence == 0


async def test_the_prune_function_removes_only_a_prefix_recorded_before_its_cut_off_and_never_after_now(
    audit: AuditClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await record(audit, 5)
    with monkeypatch.context() as clock:
        clock.setattr(handlers, "now_utc", lambda: now_utc() + timedelta(hours=1))
        await record(audit, 1)  # entry 6, recorded an hour ahead of the database's clock
    prune = sa.text("SELECT prune_activity('alice', :through, :before)")
    removed = []
    for through, before in ((5, now_utc() - timedelta(hours=1)), (2, now_utc()), (100, now_utc() + timedelta(days=1))):
        async with audit.host.databases["todo_audit"].transaction() as conn:
            removed.append(await conn.scalar(prune, {"through": through, "before": before}))
    # Nothing older than an hour ago; then entries 1-2; then the rest up to now, not entry 6.
    assert removed == [0, 2, 3]
    verified = await audit.verify(audit.alice)
    assert verified.intact and verified.pruned_through_sequence == 5 and verified.entries_checked == 1


async def test_retention_prunes_through_the_hosts_pruning_only_when_set(
    kit_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_ago = now_utc() - timedelta(days=3)
    for retention, expected in (("0", 0), ("2", 4)):
        monkeypatch.setenv("TODO_AUDIT_RETENTION_DAYS", retention)
        settings = dataclasses.replace(kit_settings, database_prefix=f"{kit_settings.database_prefix}r{retention}_")
        async with running_audit(settings) as audit:
            with monkeypatch.context() as clock:
                clock.setattr(handlers, "now_utc", lambda: long_ago)
                await record(audit, 4)
            await record(audit, 1)
            counts = await audit.host.prune()
            assert counts["audit_svc.activity_log"] == expected
            verified = await audit.verify(audit.alice)
            assert verified.intact and verified.pruned_through_sequence == expected
            assert verified.entries_checked == 5 - expected


async def test_verify_log_of_a_user_with_no_entries_is_intact(audit: AuditClient) -> None:
    verified = await audit.audit.VerifyLog(audit_pb2.VerifyLogRequest(), metadata=audit.alice)
    assert verified.intact and verified.entries_checked == 0 and verified.first_broken_sequence == 0
