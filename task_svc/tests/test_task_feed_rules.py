"""The task feed's rules without I/O: change ids, where a stream resumes, gaps; and its settings."""

from __future__ import annotations

import pytest

from task_svc import domain
from task_svc.settings import TaskFeedSettings
from todo_kit.config import ConfigError
from todo_kit.errors import InvalidArgument, NotFound

KEY = b"k" * 32


def test_a_change_id_reads_back_as_its_number_for_its_user_only() -> None:
    ids = domain.ChangeIds(KEY)
    for seq in (0, 1, 2, 41, 2**40):
        change_id = ids.issue("alice", seq)
        assert len(change_id) == domain.CHANGE_ID_CHARS
        assert ids.read("alice", change_id) == seq
        with pytest.raises(NotFound):
            ids.read("bob", change_id)
    # Another key (a rotated signing key) knows none of them.
    with pytest.raises(NotFound):
        domain.ChangeIds(b"o" * 32).read("alice", ids.issue("alice", 1))


def test_change_ids_show_nothing_of_the_number_they_carry() -> None:
    ids = domain.ChangeIds(KEY)
    mine = [ids.issue("alice", seq) for seq in range(1, 50)]
    # No common prefix or suffix that would betray a counter (as "alice-41" would).
    assert len({i[:4] for i in mine}) == len(mine) and len({i[-4:] for i in mine}) == len(mine)
    assert ids.issue("alice", 7) != ids.issue("bob", 7)


def test_an_altered_change_id_is_not_found_and_a_malformed_one_is_invalid() -> None:
    ids = domain.ChangeIds(KEY)
    good = ids.issue("alice", 12)
    for position in range(len(good) - 1):  # the last character also carries spare bits: see below
        flipped = good[:position] + ("A" if good[position] != "A" else "B") + good[position + 1 :]
        with pytest.raises(NotFound):
            ids.read("alice", flipped)
    for bad in ["", "short", good + "A", good[:-1] + "*", " " + good[1:], "é" * 27]:
        with pytest.raises(InvalidArgument) as caught:
            ids.read("alice", bad)
        assert [f for f, _ in caught.value.violations] == ["resume_after"]


def test_only_the_canonical_spelling_of_a_change_id_is_read() -> None:
    ids = domain.ChangeIds(KEY)
    good = ids.issue("alice", 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 20 bytes in 27 characters: the last character's two low bits are spare; other spellings are refused.
    others = [
        good[:-1] + c for c in alphabet if c != good[-1] and alphabet.index(c) >> 2 == alphabet.index(good[-1]) >> 2
    ]
    assert len(others) == 3
    for other in others:
        with pytest.raises(InvalidArgument):
            ids.read("alice", other)


def test_a_stream_without_resume_point_starts_after_the_newest_change() -> None:
    assert domain.resume_point(None, 17, None) == 17
    assert domain.resume_point(None, 0, None) == 0


def test_a_resume_point_is_kept_when_nothing_after_it_is_missing() -> None:
    assert domain.resume_point(17, 17, None) == 17  # up to date
    assert domain.resume_point(10, 17, 11) == 10  # 11.. kept (10 itself may be pruned)
    assert domain.resume_point(0, 3, 1) == 0


def test_a_resume_point_past_the_newest_change_never_existed() -> None:
    with pytest.raises(NotFound):
        domain.resume_point(18, 17, None)
    with pytest.raises(NotFound):
        domain.resume_point(1, 0, None)


def test_a_resume_point_followed_by_a_pruned_change_is_out_of_range() -> None:
    for first_kept in (None, 12, 17):
        with pytest.raises(domain.HistoryPruned) as caught:
            domain.resume_point(10, 17, first_kept)
        assert caught.value.code.name == "OUT_OF_RANGE"


def test_a_page_with_a_gap_after_the_stream_position_means_a_pruned_change() -> None:
    domain.check_contiguous(4, [5, 6, 7])
    domain.check_contiguous(4, [])
    for seqs in ([6, 7], [5, 7], [5, 6, 6]):
        with pytest.raises(domain.HistoryPruned):
            domain.check_contiguous(4, seqs)


def test_feed_settings_default_and_read_from_their_names() -> None:
    assert TaskFeedSettings.from_env({}) == TaskFeedSettings()
    assert TaskFeedSettings().retention_hours == 72
    settings = TaskFeedSettings.from_env(
        {
            "TODO_TASK_FEED_HEARTBEAT_SECONDS": "5",
            "TODO_TASK_FEED_MAX_STREAMS": "100",
            "TODO_TASK_FEED_MAX_STREAMS_PER_USER": "4",
            "TODO_TASK_FEED_RETENTION_HOURS": "48",
        }
    )
    assert settings == TaskFeedSettings(
        heartbeat_seconds=5, max_streams=100, max_streams_per_user=4, retention_hours=48
    )
    assert settings.retention.total_seconds() == 48 * 3600


@pytest.mark.parametrize(
    "name, value",
    [
        ("TODO_TASK_FEED_HEARTBEAT_SECONDS", "0"),
        ("TODO_TASK_FEED_MAX_STREAMS", "lots"),
        ("TODO_TASK_FEED_MAX_STREAMS_PER_USER", "0"),
        ("TODO_TASK_FEED_RETENTION_HOURS", "9000"),
    ],
)
def test_a_bad_feed_setting_stops_the_start_with_its_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TaskFeedSettings.from_env({name: value})
    assert name in str(caught.value)
