// The signed-in user, kept in sessionStorage: it lasts while the tab is open and is not shared with other tabs'
// storage or kept after the browser closes.

export interface Session {
  token: string;
  userId: string;
  /** RFC 3339; empty when unknown (a pasted token without a readable exp claim). */
  expiresAt: string;
}

const KEY = "todo.session";
const CONVERSATION_KEY = "todo.conversation";

export function loadSession(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const value = JSON.parse(raw) as Partial<Session>;
    if (typeof value.token !== "string" || !value.token) return null;
    return { token: value.token, userId: value.userId ?? "", expiresAt: value.expiresAt ?? "" };
  } catch {
    return null;
  }
}

export function saveSession(session: Session): void {
  sessionStorage.setItem(KEY, JSON.stringify(session));
}

export function clearSession(): void {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(CONVERSATION_KEY);
}

export function isExpired(session: Session, now: Date = new Date()): boolean {
  if (!session.expiresAt) return false;
  const expires = new Date(session.expiresAt).getTime();
  return !Number.isNaN(expires) && expires <= now.getTime();
}

/** The conversation this tab continues (the assistant remembers "it" and pending questions within one). */
export function loadConversationId(): string {
  return sessionStorage.getItem(CONVERSATION_KEY) ?? "";
}

export function saveConversationId(conversationId: string): void {
  sessionStorage.setItem(CONVERSATION_KEY, conversationId);
}

/** A pasted token's subject and expiry, read (not verified: the services verify it) to show who is signed in. */
export function sessionFromToken(token: string): Session {
  const session: Session = { token, userId: "", expiresAt: "" };
  const payload = token.split(".")[1];
  if (!payload) return session;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
    const claims = JSON.parse(json) as { sub?: unknown; exp?: unknown };
    if (typeof claims.sub === "string") session.userId = claims.sub;
    if (typeof claims.exp === "number") session.expiresAt = new Date(claims.exp * 1000).toISOString();
  } catch {
    // Not a JWT we can read; the gateway will say whether it is accepted.
  }
  return session;
}
