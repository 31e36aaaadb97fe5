"""A small REST and server-sent events client for the gateway tests (aiohttp)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class Reply:
    """An HTTP answer: status, headers and the JSON body (None when the body is not JSON)."""

    status: int
    headers: Mapping[str, str]
    body: Any
    text: str


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    data: bytes | None = None,
) -> Reply:
    """One request; body is sent as JSON, data as raw bytes."""
    payload = data if data is not None else (None if body is None else json.dumps(body).encode())
    async with session.request(method, url, headers=dict(headers or {}), data=payload) as response:
        text = await response.text()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return Reply(response.status, response.headers, parsed, text)


@dataclass
class Event:
    """One server-sent event."""

    event: str
    id: str | None
    data: Any


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """Parses a text/event-stream body into events, as the browser's reader does."""
    fields: dict[str, str] = {}
    data_lines: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if data_lines or fields:
                data = "\n".join(data_lines)
                yield Event(fields.get("event", "message"), fields.get("id"), json.loads(data) if data else None)
            fields, data_lines = {}, []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data_lines.append(value)
        else:
            fields[name] = value
