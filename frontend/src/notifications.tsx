// Notifications arriving live: a toast for each new one, the recent list, snooze and mark read from either, and the
// browser's own notifications when the user allowed them.

import { useEffect, useState } from "preact/hooks";
import { type Api, type Notification, type SignInNeeded, ApiError } from "./api";
import { LiveStream } from "./events";
import { formatClock, formatWhen, parseInstant } from "./time";

const SNOOZE_MINUTES = 10;
const LIST_SIZE = 30;
const TOASTS_SHOWN = 3;

function desktopPermission(): NotificationPermission | "unsupported" {
  return "Notification" in window ? window.Notification.permission : "unsupported";
}

function showOnDesktop(item: Notification): void {
  // The toast is enough while the page is in front; the desktop notification is for when it is not.
  if (desktopPermission() !== "granted" || document.hasFocus()) return;
  try {
    new window.Notification(item.title || "Reminder", { body: item.body, tag: item.notification_id });
  } catch {
    // Some browsers allow notifications only from a service worker; the toast and the list still show it.
  }
}

/** Marks a toast with the moment it entered the page (ms since the epoch), which the browser tests compare with
 * the reminder's fire time. */
function markShown(element: HTMLElement | null): void {
  if (element && !element.dataset.shownAt) element.dataset.shownAt = String(Date.now());
}

export function Notifications(props: { api: Api; onSignInNeeded: (error: SignInNeeded) => void }) {
  const { api } = props;
  const [items, setItems] = useState<Notification[]>([]);
  const [toasts, setToasts] = useState<Notification[]>([]);
  const [status, setStatus] = useState("");
  const [permission, setPermission] = useState(desktopPermission);

  async function load() {
    try {
      setItems(await api.listNotifications());
    } catch (failure) {
      if (!(failure instanceof ApiError && failure.status === 401)) setStatus("Notifications cannot be loaded.");
    }
  }

  useEffect(() => {
    const stream = new LiveStream("/v1/notifications:stream", api.token, {
      onMessage: (event, data) => {
        if (event !== "notification") return;
        const item = data as Notification;
        setItems((list) => [item, ...list.filter((n) => n.notification_id !== item.notification_id)].slice(0, LIST_SIZE));
        setToasts((list) =>
          list.some((n) => n.notification_id === item.notification_id) ? list : [...list, item].slice(-TOASTS_SHOWN),
        );
        showOnDesktop(item);
      },
      onFresh: () => void load(),
      onSignInNeeded: props.onSignInNeeded,
    });
    stream.start();
    return () => stream.stop();
  }, [api]);

  function dismiss(id: string) {
    setToasts((list) => list.filter((n) => n.notification_id !== id));
  }

  async function markRead(item: Notification) {
    try {
      await api.markRead([item.notification_id]);
      const now = new Date().toISOString();
      setItems((list) => list.map((n) => (n.notification_id === item.notification_id ? { ...n, read_time: now } : n)));
      dismiss(item.notification_id);
      setStatus(`Marked “${item.title}” read.`);
    } catch (failure) {
      if (!(failure instanceof ApiError && failure.status === 401)) setStatus(`Could not mark it read: ${messageOf(failure)}`);
    }
  }

  async function snooze(item: Notification) {
    try {
      await api.snooze(item.reminder_id, SNOOZE_MINUTES);
      await markRead(item);
      setStatus(`Snoozed “${item.title}” until ${formatClock(new Date(Date.now() + SNOOZE_MINUTES * 60_000))}.`);
    } catch (failure) {
      if (!(failure instanceof ApiError && failure.status === 401)) setStatus(`Could not snooze: ${messageOf(failure)}`);
    }
  }

  async function markAllRead() {
    const unread = items.filter((n) => !n.read_time).map((n) => n.notification_id);
    if (unread.length === 0) return;
    try {
      await api.markRead(unread);
      const now = new Date().toISOString();
      setItems((list) => list.map((n) => (n.read_time ? n : { ...n, read_time: now })));
      setToasts([]);
      setStatus("All marked read.");
    } catch (failure) {
      if (!(failure instanceof ApiError && failure.status === 401)) setStatus(`Could not mark them read: ${messageOf(failure)}`);
    }
  }

  const unread = items.filter((n) => !n.read_time).length;
  return (
    <>
      <div class="toasts" role="region" aria-label="New reminders" aria-live="assertive">
        {toasts.map((item) => (
          <div
            key={item.notification_id}
            class="toast"
            ref={markShown}
            data-notification-id={item.notification_id}
            data-reminder-id={item.reminder_id}
            aria-labelledby={`toast-${item.notification_id}`}
            role="group"
          >
            <p id={`toast-${item.notification_id}`} class="toast-title">
              {item.title}
            </p>
            {item.body && <p class="toast-body">{item.body}</p>}
            <div class="toast-actions">
              {item.reminder_id && (
                <button type="button" onClick={() => void snooze(item)}>
                  Snooze {SNOOZE_MINUTES} min
                </button>
              )}
              <button type="button" onClick={() => void markRead(item)}>
                Mark read
              </button>
              <button
                type="button"
                class="quiet"
                aria-label={`Dismiss ${item.title}`}
                onClick={() => dismiss(item.notification_id)}
              >
                ✕
              </button>
            </div>
          </div>
        ))}
      </div>
      <section class="pane notifications" aria-labelledby="notifications-title">
        <div class="pane-head">
          <h2 id="notifications-title">
            Notifications {unread > 0 && <span class="count">{unread} unread</span>}
          </h2>
          <button type="button" class="quiet" disabled={unread === 0} onClick={() => void markAllRead()}>
            Mark all read
          </button>
        </div>
        {permission === "default" && (
          <button
            type="button"
            class="quiet"
            onClick={() => void window.Notification.requestPermission().then(setPermission)}
          >
            Also show reminders on the desktop
          </button>
        )}
        <p class="status" role="status">
          {status}
        </p>
        {items.length === 0 ? (
          <p class="empty">Reminders appear here when they are due.</p>
        ) : (
          <ul class="notification-list">
            {items.map((item) => {
              const created = parseInstant(item.create_time);
              return (
                <li
                  key={item.notification_id}
                  class={item.read_time ? "read" : "unread"}
                  data-notification-id={item.notification_id}
                >
                  <p class="title">
                    {!item.read_time && <span class="visually-hidden">Unread: </span>}
                    {item.title}
                  </p>
                  {item.body && <p class="body">{item.body}</p>}
                  <p class="meta">
                    {created && <time dateTime={created.toISOString()}>{formatWhen(created)}</time>}
                    {item.late && <span class="late"> · late</span>}
                  </p>
                  <div class="item-actions">
                    {item.reminder_id && (
                      <button type="button" onClick={() => void snooze(item)} aria-label={`Snooze ${item.title}`}>
                        Snooze
                      </button>
                    )}
                    {!item.read_time && (
                      <button type="button" onClick={() => void markRead(item)} aria-label={`Mark ${item.title} read`}>
                        Mark read
                      </button>
                    )}
                  </div>
                </li>
              );
            })}
          </ul>
        )}
      </section>
    </>
  );
}

function messageOf(failure: unknown): string {
  return failure instanceof ApiError ? failure.message : "no answer";
}
