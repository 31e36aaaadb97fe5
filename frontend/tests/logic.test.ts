// The page's logic without a browser: reading server-sent events, merging task news by version, and the choices a
// clarifying reply offers. Bundled by test.mjs and run with node's test runner.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Task } from "../src/api";
import { choicesOf } from "../src/chat";
import { EventStreamParser, LiveStream } from "../src/events";
import { OpenTasks } from "../src/tasklist";

function task(id: string, version: number, status: Task["status"], due: string | null = null): Task {
  return {
    task_id: id,
    title: id,
    description: "",
    status,
    priority: "PRIORITY_NONE",
    tags: [],
    due: due ? { local_time: "", time_zone: "UTC", instant: due } : null,
    recurrence: null,
    update_time: null,
    version: String(version),
  };
}

test("events split across chunks and line endings are read whole", () => {
  const parser = new EventStreamParser();
  const text = 'id: 7\r\nevent: change\r\ndata: {"a":1}\r\n\r\n: keep-alive\n\nid: 8\nevent: heartbeat\ndata: {}\n\n';
  const events = [];
  for (const chunk of text.match(/[\s\S]{1,3}/g)!) events.push(...parser.push(chunk));
  assert.deepEqual(events, [
    { id: "7", event: "change", data: '{"a":1}' },
    { id: "8", event: "heartbeat", data: "{}" },
  ]);
});

test("an event's id carries over to later events without one, and data lines join with newlines", () => {
  const parser = new EventStreamParser();
  const events = parser.push("id: 3\ndata: one\ndata: two\n\ndata: three\n\n");
  assert.deepEqual(events, [
    { id: "3", event: "message", data: "one\ntwo" },
    { id: "3", event: "message", data: "three" },
  ]);
});

test("an unfinished event is held until its blank line arrives", () => {
  const parser = new EventStreamParser();
  assert.deepEqual(parser.push("event: change\ndata: {}\n"), []);
  assert.equal(parser.push("\n").length, 1);
});

test("open tasks are ordered by due time, tasks without one last", () => {
  const tasks = new OpenTasks();
  tasks.beginLoad();
  tasks.finishLoad([
    task("none", 1, "TASK_STATUS_OPEN"),
    task("later", 1, "TASK_STATUS_OPEN", "2030-01-02T00:00:00Z"),
    task("sooner", 1, "TASK_STATUS_OPEN", "2030-01-01T00:00:00Z"),
  ]);
  assert.deepEqual(
    tasks.list().map((t) => t.task_id),
    ["sooner", "later", "none"],
  );
});

test("an older copy of a task never replaces a newer one, whatever order they arrive in", () => {
  const tasks = new OpenTasks();
  tasks.apply(task("a", 1, "TASK_STATUS_OPEN"));
  tasks.apply(task("a", 2, "TASK_STATUS_COMPLETED"));
  tasks.apply(task("a", 1, "TASK_STATUS_OPEN")); // a late copy of the creation
  assert.deepEqual(tasks.list(), []);
});

test("a change that arrives while a listing loads is applied on top of the listing", () => {
  const tasks = new OpenTasks();
  tasks.beginLoad();
  tasks.apply(task("b", 2, "TASK_STATUS_COMPLETED")); // completed after the listing's snapshot
  tasks.apply(task("c", 1, "TASK_STATUS_OPEN")); // created after it
  tasks.finishLoad([task("a", 1, "TASK_STATUS_OPEN"), task("b", 1, "TASK_STATUS_OPEN")]);
  assert.deepEqual(tasks.list().map((t) => t.task_id).sort(), ["a", "c"]);
});

test("a deleted task leaves the list", () => {
  const tasks = new OpenTasks();
  tasks.apply(task("a", 1, "TASK_STATUS_OPEN"));
  tasks.applyChange({ change_id: "1", kind: "TASK_CHANGE_KIND_DELETED", task: task("a", 2, "TASK_STATUS_OPEN"), changed_at: null });
  assert.deepEqual(tasks.list(), []);
});

test("a numbered question offers its numbers, a yes/no question yes and no, a statement nothing", () => {
  assert.deepEqual(choicesOf("Which one?\n1. Pay rent (due Fri)\n2. Pay rent deposit", true), [
    { label: "1. Pay rent (due Fri)", answer: "1" },
    { label: "2. Pay rent deposit", answer: "2" },
  ]);
  assert.deepEqual(
    choicesOf("Delete all 3 open tasks? (yes/no)", true).map((c) => c.answer),
    ["yes", "no"],
  );
  assert.deepEqual(choicesOf("You have 2 tasks:\n1. A\n2. B", false), []);
});

/** A fetch that answers each call with the next scripted SSE body (or HTTP status), recording the URLs asked for. */
function scriptedFetch(answers: Array<string | number>, urls: string[]): typeof fetch {
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    urls.push(String(input));
    const answer = answers.shift();
    if (answer === undefined) {
      // Stays connecting until the stream is stopped.
      return new Promise<Response>((_resolve, reject) =>
        init?.signal?.addEventListener("abort", () => reject(new DOMException("stopped", "AbortError"))),
      );
    }
    if (typeof answer === "number") {
      return new Response(JSON.stringify({ code: answer === 401 ? 16 : 2, message: "no" }), { status: answer });
    }
    return new Response(answer, { status: 200, headers: { "Content-Type": "text/event-stream" } });
  }) as typeof fetch;
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(check(), "condition not reached");
}

test("a dropped stream reconnects with resume_after set to the last id it saw", async (t) => {
  const urls: string[] = [];
  t.mock.method(globalThis, "fetch", scriptedFetch(['id: 4\nevent: heartbeat\ndata: {}\n\nid: 5\nevent: change\ndata: {"change_id":"5"}\n\n'], urls));
  const seen: string[] = [];
  let fresh = 0;
  const stream = new LiveStream("/v1/tasks:stream", "token", {
    onMessage: (event, _data, id) => seen.push(`${event}:${id}`),
    onFresh: () => (fresh += 1),
    onSignInNeeded: () => undefined,
  });
  stream.start();
  await until(() => urls.length === 2);
  stream.stop();
  assert.deepEqual(seen, ["heartbeat:4", "change:5"]);
  assert.deepEqual(urls, ["/v1/tasks:stream", "/v1/tasks:stream?resume_after=5"]);
  assert.equal(fresh, 1, "only the stream that did not resume reloads the list");
});

test("a resume point out of range restarts the stream fresh, which reloads the list", async (t) => {
  const urls: string[] = [];
  const outOfRange = 'event: error\ndata: {"code":11,"message":"too old"}\n\n';
  t.mock.method(globalThis, "fetch", scriptedFetch(["id: 9\nevent: heartbeat\ndata: {}\n\n", outOfRange, "id: 12\nevent: heartbeat\ndata: {}\n\n"], urls));
  let fresh = 0;
  const stream = new LiveStream("/v1/tasks:stream", "token", {
    onMessage: () => undefined,
    onFresh: () => (fresh += 1),
    onSignInNeeded: () => undefined,
  });
  stream.start();
  await until(() => urls.length === 4);
  stream.stop();
  assert.deepEqual(urls.slice(0, 3), ["/v1/tasks:stream", "/v1/tasks:stream?resume_after=9", "/v1/tasks:stream"]);
  assert.equal(fresh, 2);
});

test("a refused token stops the stream and asks for sign-in", async (t) => {
  const urls: string[] = [];
  t.mock.method(globalThis, "fetch", scriptedFetch([401, "id: 1\nevent: heartbeat\ndata: {}\n\n"], urls));
  let refused = 0;
  const stream = new LiveStream("/v1/notifications:stream", "token", {
    onMessage: () => undefined,
    onFresh: () => undefined,
    onSignInNeeded: () => (refused += 1),
  });
  stream.start();
  await until(() => refused === 1);
  await new Promise((resolve) => setTimeout(resolve, 700));
  assert.equal(urls.length, 1, "no reconnect after a 401");
});
