// Times as the person reading the page knows them: in the browser's own zone.

export function browserZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

const sameYear = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
});
const otherYear = new Intl.DateTimeFormat(undefined, {
  day: "numeric",
  month: "short",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

export function parseInstant(value: string | null | undefined): Date | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "Tue 1 Dec, 09:00" (with the year when it is not this year), in the browser's zone. */
export function formatWhen(date: Date, now: Date = new Date()): string {
  return (date.getFullYear() === now.getFullYear() ? sameYear : otherYear).format(date);
}

/** "09:00:12", for messages and notifications. */
export function formatClock(date: Date): string {
  return clock.format(date);
}

/** "in 5 min", "3 h ago": how far a due time is, for screen readers and a quick look. */
export function relative(date: Date, now: Date = new Date()): string {
  const minutes = Math.round((date.getTime() - now.getTime()) / 60_000);
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
  if (Math.abs(minutes) < 60) return format.format(minutes, "minute");
  const hours = Math.round(minutes / 60);
  if (Math.abs(hours) < 48) return format.format(hours, "hour");
  return format.format(Math.round(hours / 24), "day");
}
