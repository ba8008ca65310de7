// The gateway's REST API as the UI uses it: the API key, start an analysis, follow its events.

// The REST API's bodies, generated from the gateway's OpenAPI document
// (scripts/gen_web_types.py; tests/test_web_types.py fails when they are stale).
import type * as Api from "./generated/api";
import type { BranchReport, ClipInfo, ProgressEvent } from "./generated/api";

export type { BranchReport, ClipInfo, ProgressEvent };
export type StageName = Api.ProgressEvent["stageName"];

/** A finished analysis; `simulated` marks simulate mode's made-up result (never the server's). */
export type AnalysisResult = Api.AnalysisResult & { simulated?: boolean };

export interface ApiError {
  code: string;
  message: string;
  httpStatus: number;
  retryAfter?: number;
}

export interface Handlers {
  onUploadProgress(fraction: number): void;
  onAccepted(analysisId: string): void;
  onProgress(event: ProgressEvent): void;
  onResult(result: AnalysisResult): void;
  onError(error: ApiError): void;
}

function errorFromResponse(status: number, body: string, retryAfter: string | null): ApiError {
  try {
    const json = JSON.parse(body);
    return {
      code: json.code ?? "error",
      message: json.error ?? json.message ?? `request failed (${status})`,
      httpStatus: status,
      retryAfter: retryAfter ? Number(retryAfter) : undefined,
    };
  } catch {
    return { code: "error", message: `the server answered ${status}`, httpStatus: status };
  }
}

// ---------------------------------------------------------------- API keys
// A gateway with API keys on (gateway/auth.py) refuses /analyze, /v1/ and /status/ without
// one. The UI asks for the key once and keeps it in sessionStorage: this tab only, gone
// when the tab closes, never sent anywhere but this gateway's API.

const KEY_STORAGE = "dfmesh.apiKey";

/** The key this tab was given, or "" (also when storage is blocked). */
export function storedApiKey(): string {
  try {
    return sessionStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return "";
  }
}

/** Keep `key` for this tab; an empty key forgets it. */
export function storeApiKey(key: string): void {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage blocked: the key lives in memory until the page reloads.
  }
}

function authHeaders(key: string): Record<string, string> {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** open: the gateway takes no key; accepted: it takes this one; needed: it wants one;
 * rejected: it refused this one; unreachable: no answer. */
export type KeyCheck = "open" | "accepted" | "needed" | "rejected" | "unreachable";

/** Ask whether `key` (or no key) will do, with a read of an analysis that cannot exist:
 * the gateway checks keys before routing, so 401 means a key is needed or this one is not
 * valid, and anything else (404) that the request got through. Reads are not rate limited. */
export async function checkApiKey(key: string): Promise<KeyCheck> {
  try {
    const response = await fetch("/v1/analyses/key-check", { headers: authHeaders(key) });
    if (response.status === 401) return key ? "rejected" : "needed";
    return key ? "accepted" : "open";
  } catch {
    return "unreachable";
  }
}

// ---------------------------------------------------------------- analyses

interface ServerEvent {
  id: string;
  event: string;
  data: string;
}

/** Read server-sent events from a response body until it ends. */
async function readEvents(body: ReadableStream<Uint8Array>, onEvent: (e: ServerEvent) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event: ServerEvent = { id: "", event: "message", data: "" };
  let data: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    for (;;) {
      // Lines end in \r\n, \n or \r; a \r last in the buffer may be the first half of \r\n.
      const end = buffer.search(/\r\n|\n|\r(?!$)/);
      if (end < 0) break;
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
      if (line === "") {
        if (data.length) onEvent({ ...event, data: data.join("\n") });
        event = { id: event.id, event: "message", data: "" };
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // a comment (keep-alive ping)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const raw = colon < 0 ? "" : line.slice(colon + 1);
      const text = raw.startsWith(" ") ? raw.slice(1) : raw;
      if (field === "data") data.push(text);
      else if (field === "event") event.event = text;
      else if (field === "id") event.id = text;
    }
  }
}

const MAX_RECONNECTS = 5;

/** Follow an analysis's events with fetch (EventSource cannot send the API key). A dropped
 * stream is reopened with Last-Event-ID, as EventSource would, so no event is lost or repeated. */
function followEvents(analysisId: string, key: string, handlers: Handlers, signal: AbortSignal): void {
  let lastId = "";
  let finished = false;
  let reconnects = 0;
  const dispatch = (e: ServerEvent) => {
    if (e.id) lastId = e.id;
    const data = JSON.parse(e.data);
    if (e.event === "progress") handlers.onProgress(data);
    else if (e.event === "result") {
      finished = true;
      handlers.onResult(data);
    } else if (e.event === "error") {
      finished = true;
      handlers.onError({ code: data.code, message: data.message, httpStatus: data.httpStatus });
    }
  };
  const connect = async (): Promise<void> => {
    try {
      const headers: Record<string, string> = { ...authHeaders(key), Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(`/v1/analyses/${analysisId}/events`, { headers, signal });
      if (!response.ok || !response.body) {
        finished = true;
        const body = await response.text();
        handlers.onError(errorFromResponse(response.status, body, response.headers.get("Retry-After")));
        return;
      }
      await readEvents(response.body, (e) => {
        reconnects = 0;
        if (!finished) dispatch(e);
      });
    } catch {
      if (signal.aborted) return;
    }
    if (finished || signal.aborted) return;
    if (reconnects++ < MAX_RECONNECTS) setTimeout(() => void connect(), 1000);
    else handlers.onError({ code: "network", message: "lost the connection to the server", httpStatus: 0 });
  };
  void connect();
}

/** Upload with XMLHttpRequest (fetch cannot report upload progress), then follow the
 * analysis's server-sent events. `key` is this tab's API key ("" for none). Returns a
 * function that stops everything. */
export function analyze(file: File, handlers: Handlers, key = ""): () => void {
  const events = new AbortController();
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/analyses");
  for (const [name, value] of Object.entries(authHeaders(key))) xhr.setRequestHeader(name, value);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) handlers.onUploadProgress(e.loaded / e.total);
  };
  xhr.onerror = () =>
    handlers.onError({ code: "network", message: "could not reach the server", httpStatus: 0 });
  xhr.onload = () => {
    if (xhr.status !== 202) {
      handlers.onError(errorFromResponse(xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After")));
      return;
    }
    const { analysisId } = JSON.parse(xhr.responseText) as { analysisId: string };
    handlers.onAccepted(analysisId);
    followEvents(analysisId, key, handlers, events.signal);
  };
  const form = new FormData();
  form.append("file", file);
  xhr.send(form);
  return () => {
    xhr.abort();
    events.abort();
  };
}
