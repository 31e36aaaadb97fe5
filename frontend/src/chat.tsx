// The conversation with the assistant: what the user wrote, the replies, what the assistant did, and its questions
// as buttons.

import { useEffect, useRef, useState } from "preact/hooks";
import { type Api, type ChatAction, type Task, ApiError } from "./api";
import { loadConversationId, saveConversationId } from "./session";
import { browserZone, formatClock } from "./time";

export const SUGGESTIONS = [
  "remind me to call mom in 2 minutes",
  "remind me to feed the cat every day at 7am",
  "what's due this week?",
  "pay rent on the 1st of every month, high priority, tag finance",
  "help",
];

const MAX_TEXT = 4000;

export interface Choice {
  label: string;
  /** What clicking it sends: the assistant reads "2" as the second choice and "yes"/"no" as a confirmation. */
  answer: string;
}

interface Message {
  key: number;
  role: "user" | "assistant" | "error";
  text: string;
  actions: ChatAction[];
  choices: Choice[];
  at: Date;
}

const ACTION_LABELS: Record<string, string> = {
  INTENT_KIND_CREATE_TASK: "Created",
  INTENT_KIND_UPDATE_TASK: "Changed",
  INTENT_KIND_COMPLETE_TASK: "Completed",
  INTENT_KIND_REOPEN_TASK: "Reopened",
  INTENT_KIND_DELETE_TASK: "Deleted",
  INTENT_KIND_LIST_TASKS: "Listed",
  INTENT_KIND_SNOOZE_REMINDER: "Snoozed",
  INTENT_KIND_UPDATE_CHANNELS: "Settings",
  INTENT_KIND_SHOW_ACTIVITY: "Activity",
};

/** The answers a clarifying reply offers: its numbered lines ("1. Pay rent ..."), or yes and no. */
export function choicesOf(reply: string, needsClarification: boolean): Choice[] {
  if (!needsClarification) return [];
  const choices: Choice[] = [];
  for (const line of reply.split("\n")) {
    const match = /^\s*(\d{1,3})\.\s+(.+)$/.exec(line);
    if (match) choices.push({ label: `${match[1]}. ${match[2]}`, answer: match[1]! });
  }
  if (choices.length === 0 && /\(yes\/no\)\s*$/i.test(reply.trim())) {
    choices.push({ label: "Yes", answer: "yes" }, { label: "No", answer: "no" });
  }
  return choices;
}

/** The reply without the numbered lines that are shown as buttons. */
function questionText(message: Message): string {
  if (message.choices.length === 0 || message.choices[0]!.answer === "yes") return message.text;
  return message.text
    .split("\n")
    .filter((line) => !/^\s*\d{1,3}\.\s+/.test(line))
    .join("\n");
}

export function ChatPane(props: { api: Api; onTasksSeen: (tasks: Task[]) => void }) {
  const [messages, setMessages] = useState<Message[]>([]);
  const [text, setText] = useState("");
  const [sending, setSending] = useState(false);
  const conversation = useRef(loadConversationId());
  const counter = useRef(0);
  const input = useRef<HTMLTextAreaElement>(null);
  const log = useRef<HTMLDivElement>(null);

  useEffect(() => {
    input.current?.focus();
  }, []);
  useEffect(() => {
    const element = log.current;
    if (element) element.scrollTop = element.scrollHeight;
  }, [messages]);

  function add(message: Omit<Message, "key" | "at">) {
    counter.current += 1;
    const entry: Message = { ...message, key: counter.current, at: new Date() };
    setMessages((list) => [...list, entry]);
  }

  async function send(raw: string) {
    const message = raw.trim();
    if (!message || sending) return;
    if (message.length > MAX_TEXT) {
      add({ role: "error", text: `Messages are at most ${MAX_TEXT} characters.`, actions: [], choices: [] });
      return;
    }
    // An earlier question's buttons no longer apply once something else is said.
    setMessages((list) => list.map((m) => (m.choices.length ? { ...m, choices: [] } : m)));
    add({ role: "user", text: message, actions: [], choices: [] });
    setText("");
    setSending(true);
    try {
      const reply = await props.api.sendMessage(message, conversation.current, browserZone());
      if (reply.conversation_id && reply.conversation_id !== conversation.current) {
        conversation.current = reply.conversation_id;
        saveConversationId(reply.conversation_id);
      }
      add({
        role: "assistant",
        text: reply.reply,
        actions: reply.actions ?? [],
        choices: choicesOf(reply.reply, reply.needs_clarification),
      });
      const touched = (reply.actions ?? []).flatMap((a) => (a.task ? [a.task] : []));
      if (touched.length) props.onTasksSeen(touched);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return; // the page returns to sign-in
      const detail = error instanceof ApiError ? error.message : "The assistant cannot be reached.";
      add({ role: "error", text: `Not sent: ${detail}`, actions: [], choices: [] });
      setText((current) => current || message);
    } finally {
      setSending(false);
      input.current?.focus();
    }
  }

  function onKeyDown(event: KeyboardEvent) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      void send(text);
    }
  }

  return (
    <section class="pane chat" aria-labelledby="chat-title">
      <h2 id="chat-title">Chat</h2>
      <div class="messages" ref={log} role="log" aria-live="polite" aria-relevant="additions" aria-label="Conversation">
        {messages.length === 0 && (
          <p class="empty">Tell the assistant what to remember, in your own words. Times are in {browserZone()}.</p>
        )}
        {messages.map((m) => (
          <article key={m.key} class={`message ${m.role}`} aria-label={m.role === "user" ? "You said" : "Assistant"}>
            <p class="text">{m.role === "user" ? m.text : questionText(m)}</p>
            {m.actions.length > 0 && (
              <ul class="actions" aria-label="What the assistant did">
                {m.actions.map((action, i) => (
                  <li key={i}>
                    <span class="badge">{ACTION_LABELS[action.kind] ?? "Done"}</span>{" "}
                    {/* A single action's summary is usually the reply itself: then name the task instead. */}
                    {action.summary && action.summary !== m.text ? action.summary : (action.task?.title ?? "")}
                  </li>
                ))}
              </ul>
            )}
            {m.choices.length > 0 && (
              <div class="choices" role="group" aria-label="Answer the question">
                {m.choices.map((choice) => (
                  <button type="button" key={choice.answer} class="choice" onClick={() => void send(choice.answer)}>
                    {choice.label}
                  </button>
                ))}
              </div>
            )}
            <time class="at" dateTime={m.at.toISOString()}>
              {formatClock(m.at)}
            </time>
          </article>
        ))}
        {sending && (
          <p class="message pending" aria-busy="true">
            Thinking…
          </p>
        )}
      </div>
      <form
        class="composer"
        onSubmit={(event) => {
          event.preventDefault();
          void send(text);
        }}
      >
        <label for="chat-input" class="visually-hidden">
          Message to the assistant
        </label>
        <textarea
          id="chat-input"
          ref={input}
          rows={2}
          value={text}
          maxLength={MAX_TEXT}
          placeholder="remind me to call mom in 2 minutes"
          aria-describedby="chat-help"
          onInput={(e) => setText(e.currentTarget.value)}
          onKeyDown={onKeyDown}
        />
        <button type="submit" class="primary" disabled={sending || !text.trim()}>
          Send
        </button>
        <p id="chat-help" class="hint">
          Enter sends; Shift+Enter starts a new line.
        </p>
      </form>
      <div class="suggestions" role="group" aria-label="Suggestions">
        {SUGGESTIONS.map((suggestion) => (
          <button
            type="button"
            key={suggestion}
            class="suggestion"
            onClick={() => {
              setText(suggestion);
              input.current?.focus();
            }}
          >
            {suggestion}
          </button>
        ))}
      </div>
    </section>
  );
}
