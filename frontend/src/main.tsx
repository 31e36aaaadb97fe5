// The page: sign-in, then the chat, the open tasks and the notifications of the signed-in user.

import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import "./app.css";
import { Api, type SignInNeeded } from "./api";
import { ChatPane } from "./chat";
import { Notifications } from "./notifications";
import { type Session, clearSession, isExpired, loadSession, saveSession } from "./session";
import { SignIn } from "./signin";
import { OpenTasks } from "./tasklist";
import { TaskPane } from "./tasks";
import { browserZone } from "./time";

const EXPIRED = "Your sign-in has expired or was refused. Please sign in again.";

function App() {
  const [session, setSession] = useState<Session | null>(() => {
    const stored = loadSession();
    return stored && !isExpired(stored) ? stored : null;
  });
  const [notice, setNotice] = useState(() => {
    const stored = loadSession();
    return stored && isExpired(stored) ? EXPIRED : "";
  });

  function signOut(message: string) {
    clearSession();
    setNotice(message);
    setSession(null);
  }

  const api = useMemo(
    () => (session ? new Api(session.token, (_error: SignInNeeded) => signOut(EXPIRED)) : null),
    [session?.token],
  );
  const tasks = useMemo(() => new OpenTasks(), [session?.token]);

  useEffect(() => {
    document.title = session ? `Todo Chatbot · ${session.userId || "signed in"}` : "Todo Chatbot · sign in";
  }, [session]);

  if (!session || !api) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(signedIn) => {
          saveSession(signedIn);
          setNotice("");
          setSession(signedIn);
        }}
      />
    );
  }

  return (
    <div class="layout">
      <a class="skip" href="#chat-input">
        Skip to the message box
      </a>
      <header class="top">
        <h1>Todo Chatbot</h1>
        <p class="who">
          Signed in as <strong>{session.userId || "(token)"}</strong>
          <span class="zone"> · times in {browserZone()}</span>
        </p>
        <button type="button" class="quiet" onClick={() => signOut("You signed out.")}>
          Sign out
        </button>
      </header>
      <main class="panes">
        <ChatPane api={api} onTasksSeen={(seen) => seen.forEach((task) => tasks.apply(task))} />
        <div class="side">
          <TaskPane api={api} tasks={tasks} onSignInNeeded={() => signOut(EXPIRED)} />
          <Notifications api={api} onSignInNeeded={() => signOut(EXPIRED)} />
        </div>
      </main>
      <footer class="bottom">
        <a href="docs/">REST API reference</a>
      </footer>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
