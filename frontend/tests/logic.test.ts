// The page's logic without a browser: reading server-sent events, merging task news by version, and the choices a
// clarifying reply offers. Bundled by test.mjs and run with node's test runner.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Task } from "../src/api";
import { choicesOf } from "../src/chat";
import { EventStreamParser } from "../src/events";
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
