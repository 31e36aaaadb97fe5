"""Page tokens: they round-trip, and garbage or another listing's token is refused."""

from __future__ import annotations

import pytest

from todo_contracts.task.v1 import task_service_pb2
from todo_kit import paging


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    request = task_service_pb2.ListTasksRequest(query="rent")
    fingerprint = paging.query_fingerprint(request)
    assert paging.decode_page_token(paging.encode_page_token(50, fingerprint), fingerprint) == 50
    for garbage in ["x", "!!!!", "eyJvIjotMSwiZiI6IngifQ", "bnVsbA"]:
        with pytest.raises(ValueError):
            paging.decode_page_token(garbage, fingerprint)
    other = paging.query_fingerprint(task_service_pb2.ListTasksRequest(query="milk"))
    with pytest.raises(ValueError, match="other filters"):
        paging.decode_page_token(paging.encode_page_token(50, fingerprint), other)
