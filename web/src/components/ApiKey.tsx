import { useState } from "react";
import type { KeyCheck } from "../api";

export type KeyState = KeyCheck | "checking";

interface Props {
  state: KeyState;
  onSave(key: string): void;
  onForget(): void;
}

/** The API key, when the gateway wants one: a clear "API key needed" (or "not accepted")
 * panel with a field to enter it once, then a quiet line while this tab holds it. */
export function ApiKey({ state, onSave, onForget }: Props) {
  const [draft, setDraft] = useState("");
  if (state === "accepted") {
    return (
      <div className="apikey apikey--set muted small" data-testid="api-key-set">
        API key set for this tab.{" "}
        <button type="button" className="link" data-testid="api-key-forget" onClick={onForget}>
          Forget it
        </button>
      </div>
    );
  }
  if (state !== "needed" && state !== "rejected") return null;
  const rejected = state === "rejected";
  return (
    <section className="card apikey" role="alert" data-testid="api-key-needed" data-state={state}>
      <h2 data-testid="api-key-title">{rejected ? "API key not accepted" : "API key needed"}</h2>
      <p>
        {rejected
          ? "This server did not accept that key. Check it, or ask its operator for a new one."
          : "This server analyzes clips only for holders of an API key. Enter yours once: it is kept for this browser tab only and sent only to this server."}
      </p>
      <form
        className="apikey__form"
        onSubmit={(e) => {
          e.preventDefault();
          const key = draft.trim();
          if (key) {
            onSave(key);
            setDraft("");
          }
        }}
      >
        <input
          type="password"
          autoComplete="off"
          spellCheck={false}
          aria-label="API key"
          placeholder="API key"
          data-testid="api-key-input"
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
        />
        <button type="submit" data-testid="api-key-save" disabled={!draft.trim()}>
          Use this key
        </button>
      </form>
    </section>
  );
}
