// Open tasks by due time in the browser's zone, kept live by the task feed; search; complete with one click.

import { useEffect, useRef, useState } from "preact/hooks";
import { type Api, type SignInNeeded, type Task, type TaskChange, ApiError } from "./api";
import { LiveStream } from "./events";
import type { OpenTasks } from "./tasklist";
import { formatWhen, parseInstant, relative } from "./time";

const PRIORITY_NAMES: Record<string, string> = {
  PRIORITY_LOW: "low",
  PRIORITY_MEDIUM: "medium",
  PRIORITY_HIGH: "high",
  PRIORITY_URGENT: "urgent",
};
const SEARCH_DELAY_MS = 250;

export function TaskPane(props: {
  api: Api;
  tasks: OpenTasks;
  onSignInNeeded: (error: SignInNeeded) => void;
}) {
  const { api, tasks } = props;
  const [, setRevision] = useState(0);
  const [now, setNow] = useState(() => new Date());
  const [words, setWords] = useState("");
  const [loading, setLoading] = useState(true);
  const [live, setLive] = useState(false);
  const [error, setError] = useState("");
  const [completing, setCompleting] = useState<ReadonlySet<string>>(new Set());
  const wordsRef = useRef("");
  const loadSerial = useRef(0);

  async function reload() {
    const serial = ++loadSerial.current;
    tasks.beginLoad();
    try {
      const listed = await api.listOpenTasks(wordsRef.current);
      if (serial !== loadSerial.current) return; // a newer search or reload answers instead
      tasks.finishLoad(listed);
      setError("");
    } catch (failure) {
      if (serial === loadSerial.current && !(failure instanceof ApiError && failure.status === 401)) {
        setError(failure instanceof ApiError ? failure.message : "The task list cannot be loaded.");
      }
    } finally {
      if (serial === loadSerial.current) setLoading(false);
    }
  }

  useEffect(() => tasks.subscribe(() => setRevision((r) => r + 1)), [tasks]);

  useEffect(() => {
    const timer = setInterval(() => setNow(new Date()), 15_000);
    return () => clearInterval(timer);
  }, []);

  useEffect(() => {
    // The feed's first heartbeat on a fresh stream (also after OUT_OF_RANGE) reloads the list, so no change between
    // the listing and the stream is missed.
    const feed = new LiveStream("/v1/tasks:stream", api.token, {
      onMessage: (event, data) => {
        if (event === "change") tasks.applyChange(data as TaskChange);
      },
      onFresh: () => void reload(),
      onSignInNeeded: props.onSignInNeeded,
      onConnected: setLive,
    });
    feed.start();
    return () => feed.stop();
  }, [api, tasks]);

  useEffect(() => {
    wordsRef.current = words;
    tasks.onNewsWhileFiltered = words.trim() ? () => void reload() : null;
    const timer = setTimeout(() => void reload(), SEARCH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [words]);

  async function complete(task: Task) {
    setCompleting((set) => new Set(set).add(task.task_id));
    try {
      tasks.apply(await api.completeTask(task.task_id));
      setError("");
    } catch (failure) {
      if (!(failure instanceof ApiError && failure.status === 401)) {
        setError(`Could not complete “${task.title}”: ${failure instanceof ApiError ? failure.message : "no answer"}`);
      }
    } finally {
      setCompleting((set) => {
        const next = new Set(set);
        next.delete(task.task_id);
        return next;
      });
    }
  }

  const shown = tasks.list();
  const overdue = shown.filter((t) => isOverdue(t, now)).length;
  return (
    <section class="pane tasks" aria-labelledby="tasks-title">
      <div class="pane-head">
        <h2 id="tasks-title">Open tasks</h2>
        <span class={`live ${live ? "on" : "off"}`} role="status">
          {live ? "Live" : "Connecting…"}
        </span>
      </div>
      <form role="search" class="search" onSubmit={(e) => e.preventDefault()}>
        <label for="task-search" class="visually-hidden">
          Search tasks
        </label>
        <input
          id="task-search"
          type="search"
          placeholder="Search tasks"
          value={words}
          maxLength={200}
          onInput={(e) => setWords(e.currentTarget.value)}
        />
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <p class="summary" aria-live="polite">
        {loading
          ? "Loading…"
          : `${shown.length} open${words.trim() ? " matching" : ""}${overdue ? `, ${overdue} overdue` : ""}`}
      </p>
      <ul class="task-list" aria-labelledby="tasks-title">
        {shown.map((task) => (
          <TaskItem
            key={task.task_id}
            task={task}
            now={now}
            seenAt={tasks.seenAt(task.task_id)}
            busy={completing.has(task.task_id)}
            onComplete={() => void complete(task)}
          />
        ))}
      </ul>
      {!loading && shown.length === 0 && (
        <p class="empty">{words.trim() ? "No open task matches." : "No open tasks. Ask the assistant to add one."}</p>
      )}
    </section>
  );
}

function isOverdue(task: Task, now: Date): boolean {
  const due = parseInstant(task.due?.instant);
  return due !== null && due.getTime() < now.getTime();
}

function TaskItem(props: { task: Task; now: Date; seenAt: number; busy: boolean; onComplete: () => void }) {
  const { task, now } = props;
  const due = parseInstant(task.due?.instant);
  const overdue = isOverdue(task, now);
  const priority = PRIORITY_NAMES[task.priority];
  const titleId = `task-${task.task_id}-title`;
  return (
    <li
      class={`task${overdue ? " overdue" : ""}`}
      data-task-id={task.task_id}
      data-seen-at={String(props.seenAt)}
      aria-labelledby={titleId}
    >
      <button
        type="button"
        class="complete"
        disabled={props.busy}
        aria-label={`Complete ${task.title}`}
        title="Complete"
        onClick={props.onComplete}
      >
        <span aria-hidden="true">✓</span>
      </button>
      <div class="task-body">
        <span id={titleId} class="title">
          {task.title}
        </span>
        <span class="meta">
          {due ? (
            <time dateTime={due.toISOString()} class="due">
              {overdue && <strong class="overdue-label">Overdue · </strong>}
              {formatWhen(due, now)} <span class="relative">({relative(due, now)})</span>
            </time>
          ) : (
            <span class="due none">No due time</span>
          )}
          {task.recurrence?.rrule && <span class="repeats">repeats</span>}
          {priority && <span class={`priority ${priority}`}>{priority} priority</span>}
          {task.tags.map((tag) => (
            <span class="tag" key={tag}>
              #{tag}
            </span>
          ))}
        </span>
      </div>
    </li>
  );
}
