// The open tasks the task pane shows, kept current from three sources that may arrive in any order: a ListTasks
// reload, the live task feed, and the tasks the chat's replies carry. A task's version decides which news is newer.

import type { Task, TaskChange } from "./api";

type Listener = () => void;

export class OpenTasks {
  private readonly tasks = new Map<string, Task>();
  /** The newest version seen of every task, open or not, so an older copy never overwrites a newer one. */
  private readonly versions = new Map<string, number>();
  /** When each task first appeared on this page (ms since the epoch), shown as data-seen-at for the tests. */
  private readonly seen = new Map<string, number>();
  /** Tasks that arrived while a reload was in flight, applied again on top of its result. */
  private arrivedDuringLoad: Task[] | null = null;
  private readonly listeners = new Set<Listener>();
  /** Set while a search is shown: news of a task then reloads the search (only the server knows what matches). */
  onNewsWhileFiltered: (() => void) | null = null;

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  /** Open tasks by due time (tasks without one last, then by title). */
  list(): Task[] {
    return [...this.tasks.values()].sort(byDue);
  }

  seenAt(taskId: string): number {
    return this.seen.get(taskId) ?? 0;
  }

  beginLoad(): void {
    this.arrivedDuringLoad = [];
  }

  /** The result of a ListTasks call started with beginLoad(). */
  finishLoad(tasks: Task[]): void {
    const arrived = this.arrivedDuringLoad ?? [];
    this.arrivedDuringLoad = null;
    this.tasks.clear();
    for (const task of tasks) {
      const known = this.versions.get(task.task_id) ?? 0;
      if (version(task) < known) continue; // a change after the listing's snapshot: applied below
      this.versions.set(task.task_id, version(task));
      if (task.status === "TASK_STATUS_OPEN") this.put(task);
    }
    for (const task of arrived) this.accept(task, true);
    this.changed();
  }

  /** A task as some reply or event shows it. */
  apply(task: Task): void {
    if (this.onNewsWhileFiltered) {
      this.onNewsWhileFiltered();
      return;
    }
    this.arrivedDuringLoad?.push(task);
    if (this.accept(task, false)) this.changed();
  }

  applyChange(change: TaskChange): void {
    if (!change.task) return;
    const task =
      change.kind === "TASK_CHANGE_KIND_DELETED" ? { ...change.task, status: "TASK_STATUS_UNSPECIFIED" as const } : change.task;
    this.apply(task);
  }

  private accept(task: Task, force: boolean): boolean {
    const known = this.versions.get(task.task_id) ?? 0;
    if (version(task) < known || (!force && version(task) === known && this.isCurrent(task))) return false;
    this.versions.set(task.task_id, version(task));
    if (task.status === "TASK_STATUS_OPEN") this.put(task);
    else this.tasks.delete(task.task_id);
    return true;
  }

  private isCurrent(task: Task): boolean {
    const shown = this.tasks.get(task.task_id);
    return task.status === "TASK_STATUS_OPEN" ? shown !== undefined : shown === undefined;
  }

  private put(task: Task): void {
    if (!this.seen.has(task.task_id)) this.seen.set(task.task_id, Date.now());
    this.tasks.set(task.task_id, task);
  }
}

function version(task: Task): number {
  const value = Number(task.version);
  return Number.isFinite(value) ? value : 0;
}

function dueMs(task: Task): number {
  const instant = task.due?.instant ? Date.parse(task.due.instant) : NaN;
  return Number.isNaN(instant) ? Number.POSITIVE_INFINITY : instant;
}

function byDue(a: Task, b: Task): number {
  const difference = dueMs(a) - dueMs(b);
  if (difference !== 0 && !Number.isNaN(difference)) return difference;
  return a.title.localeCompare(b.title) || a.task_id.localeCompare(b.task_id);
}
