// Sign-in: a name (the embedded default's dev token endpoint) or a bearer token from the deployment's identity
// provider.

import { useEffect, useRef, useState } from "preact/hooks";
import { type UiConfig, ApiError, devToken, uiConfig } from "./api";
import { type Session, sessionFromToken } from "./session";

const USER_ID = /^[A-Za-z0-9._@:+-]{1,128}$/;

export function SignIn(props: { notice: string; onSignedIn: (session: Session) => void }) {
  const [config, setConfig] = useState<UiConfig | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [value, setValue] = useState("");
  const field = useRef<HTMLInputElement & HTMLTextAreaElement>(null);

  useEffect(() => {
    uiConfig()
      .then(setConfig)
      .catch(() => setConfig({ dev_sign_in: false }));
  }, []);
  useEffect(() => {
    if (config) field.current?.focus();
  }, [config]);

  async function submit(event: Event) {
    event.preventDefault();
    setError("");
    const text = value.trim();
    if (config?.dev_sign_in) {
      if (!USER_ID.test(text)) {
        setError("Use 1 to 128 letters, digits or . _ @ : + -");
        field.current?.focus();
        return;
      }
      setBusy(true);
      try {
        const issued = await devToken(text);
        props.onSignedIn({ token: issued.token, userId: issued.user_id, expiresAt: issued.expires_at });
      } catch (failure) {
        setError(failure instanceof ApiError ? failure.message : "The sign-in service cannot be reached.");
        field.current?.focus();
      } finally {
        setBusy(false);
      }
      return;
    }
    const token = text.replace(/^Bearer\s+/i, "");
    if (!token) {
      setError("Paste the token your identity provider issued.");
      field.current?.focus();
      return;
    }
    props.onSignedIn(sessionFromToken(token));
  }

  const describedBy = [props.notice ? "signin-notice" : "", error ? "signin-error" : ""].filter(Boolean).join(" ");
  return (
    <main class="signin" aria-labelledby="signin-title">
      <form class="card" onSubmit={submit} noValidate>
        <h1 id="signin-title">Todo Chatbot</h1>
        {props.notice && (
          <p id="signin-notice" class="notice" role="alert">
            {props.notice}
          </p>
        )}
        {!config ? (
          <p aria-busy="true">Loading…</p>
        ) : config.dev_sign_in ? (
          <>
            <label for="signin-name">Sign in as a name</label>
            <input
              id="signin-name"
              ref={field}
              name="user_id"
              autocomplete="username"
              value={value}
              maxLength={128}
              required
              aria-invalid={error ? "true" : undefined}
              aria-describedby={describedBy || undefined}
              onInput={(e) => setValue(e.currentTarget.value)}
            />
            <p class="hint">This local installation signs you in by name only; anyone can pick any name.</p>
          </>
        ) : (
          <>
            <label for="signin-token">Bearer token</label>
            <textarea
              id="signin-token"
              ref={field}
              name="token"
              rows={4}
              value={value}
              required
              aria-invalid={error ? "true" : undefined}
              aria-describedby={describedBy || undefined}
              onInput={(e) => setValue(e.currentTarget.value)}
            />
            <p class="hint">Paste the access token your organisation's identity provider issued for this service.</p>
          </>
        )}
        {error && (
          <p id="signin-error" class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={!config || busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        <p class="hint">
          <a href="docs/">REST API reference</a>
        </p>
      </form>
    </main>
  );
}
