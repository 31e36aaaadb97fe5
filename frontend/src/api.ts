// The gateway's REST/JSON face, as the page uses it. Field names are the proto names (snake_case); int64 values
// arrive as strings and Timestamps as RFC 3339 strings; unset message fields are null.

export interface ZonedDateTime {
  local_time: string;
  time_zone: string;
  instant: string | null;
}

export type TaskStatus = "TASK_STATUS_UNSPECIFIED" | "TASK_STATUS_OPEN" | "TASK_STATUS_COMPLETED";
export type Priority =
  | "PRIORITY_UNSPECIFIED"
  | "PRIORITY_NONE"
  | "PRIORITY_LOW"
  | "PRIORITY_MEDIUM"
  | "PRIORITY_HIGH"
  | "PRIORITY_URGENT";

export interface Task {
  task_id: string;
  title: string;
  description: string;
  status: TaskStatus;
  priority: Priority;
  tags: string[];
  due: ZonedDateTime | null;
  recurrence: { rrule: string } | null;
  update_time: string | null;
  version: string;
}

export type TaskChangeKind =
  | "TASK_CHANGE_KIND_UNSPECIFIED"
  | "TASK_CHANGE_KIND_CREATED"
  | "TASK_CHANGE_KIND_UPDATED"
  | "TASK_CHANGE_KIND_COMPLETED"
  | "TASK_CHANGE_KIND_REOPENED"
  | "TASK_CHANGE_KIND_DELETED";

export interface TaskChange {
  change_id: string;
  kind: TaskChangeKind;
  task: Task | null;
  changed_at: string | null;
}

export interface ChatAction {
  kind: string;
  task: Task | null;
  tasks: Task[];
  summary: string;
}

export interface SendMessageResponse {
  conversation_id: string;
  reply: string;
  actions: ChatAction[];
  needs_clarification: boolean;
}

export interface Notification {
  notification_id: string;
  title: string;
  body: string;
  task_id: string;
  reminder_id: string;
  create_time: string | null;
  read_time: string | null;
  late: boolean;
}

export interface DevToken {
  token: string;
  user_id: string;
  expires_at: string;
}

export interface UiConfig {
  dev_sign_in: boolean;
}

/** gRPC status codes the page reacts to. */
export const Code = {
  NOT_FOUND: 5,
  OUT_OF_RANGE: 11,
  UNAUTHENTICATED: 16,
} as const;

/** A refused call: grpc-gateway's error body {code, message, details} with the HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** The gateway said the token is missing, expired or refused (HTTP 401). */
export class SignInNeeded extends ApiError {}

export async function errorOf(response: Response): Promise<ApiError> {
  let code = 2;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = (await response.json()) as { code?: number; message?: string };
    if (typeof body.code === "number") code = body.code;
    if (typeof body.message === "string" && body.message) message = body.message;
  } catch {
    // Not JSON (a proxy's page, say): the status line says enough.
  }
  const Kind = response.status === 401 ? SignInNeeded : ApiError;
  return new Kind(response.status, code, message);
}

async function anonymous<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? null : JSON.stringify(body),
  });
  if (!response.ok) throw await errorOf(response);
  return (await response.json()) as T;
}

export function uiConfig(): Promise<UiConfig> {
  return anonymous<UiConfig>("GET", "/ui-config.json");
}

export function devToken(userId: string): Promise<DevToken> {
  return anonymous<DevToken>("POST", "/v1/dev/token", { user_id: userId });
}

/** A unique id for client_request_id, so a retried send is not carried out twice. */
export function requestId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Calls made as the signed-in user; every 401 reaches onSignInNeeded. */
export class Api {
  constructor(
    readonly token: string,
    private readonly onSignInNeeded: (error: SignInNeeded) => void,
  ) {}

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? null : JSON.stringify(body) });
    if (!response.ok) {
      const error = await errorOf(response);
      if (error instanceof SignInNeeded) this.onSignInNeeded(error);
      throw error;
    }
    return (await response.json()) as T;
  }

  sendMessage(text: string, conversationId: string, timeZone: string): Promise<SendMessageResponse> {
    return this.call("POST", "/v1/chat:send", {
      conversation_id: conversationId,
      text,
      time_zone: timeZone,
      client_request_id: requestId(),
    });
  }

  async listOpenTasks(words: string): Promise<Task[]> {
    const query = new URLSearchParams({
      statuses: "TASK_STATUS_OPEN",
      order_by: "TASK_ORDER_BY_DUE_TIME",
      sort_order: "SORT_ORDER_ASCENDING",
      page_size: "200",
    });
    if (words.trim()) query.set("query", words.trim());
    const reply = await this.call<{ tasks: Task[] }>("GET", `/v1/tasks?${query}`);
    return reply.tasks ?? [];
  }

  async completeTask(taskId: string): Promise<Task> {
    const reply = await this.call<{ task: Task }>("POST", `/v1/tasks/${encodeURIComponent(taskId)}:complete`, {});
    return reply.task;
  }

  async listNotifications(): Promise<Notification[]> {
    const reply = await this.call<{ notifications: Notification[] }>("GET", "/v1/notifications?page_size=30");
    return reply.notifications ?? [];
  }

  async markRead(notificationIds: string[]): Promise<void> {
    await this.call("POST", "/v1/notifications:markRead", { notification_ids: notificationIds });
  }

  async snooze(reminderId: string, minutes: number): Promise<void> {
    await this.call("POST", `/v1/reminders/${encodeURIComponent(reminderId)}:snooze`, {
      snooze_for: `${minutes * 60}s`,
    });
  }
}
