// The gateway's REST API as the UI uses it: start an analysis, then follow its events.

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

/** Upload with XMLHttpRequest (fetch cannot report upload progress), then follow the
 * analysis over server-sent events. Returns a function that stops everything. */
export function analyze(file: File, handlers: Handlers): () => void {
  let source: EventSource | null = null;
  let finished = false;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/analyses");
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
    source = new EventSource(`/v1/analyses/${analysisId}/events`);
    source.addEventListener("progress", (e) => handlers.onProgress(JSON.parse((e as MessageEvent).data)));
    source.addEventListener("result", (e) => {
      finished = true;
      source?.close();
      handlers.onResult(JSON.parse((e as MessageEvent).data));
    });
    source.addEventListener("error", (e) => {
      const data = (e as MessageEvent).data;
      if (data) {
        finished = true;
        source?.close();
        const err = JSON.parse(data);
        handlers.onError({ code: err.code, message: err.message, httpStatus: err.httpStatus });
      } else if (!finished && source?.readyState === EventSource.CLOSED) {
        handlers.onError({ code: "network", message: "lost the connection to the server", httpStatus: 0 });
      }
      // Otherwise the browser reconnects by itself and resumes after the last event id.
    });
  };
  const form = new FormData();
  form.append("file", file);
  xhr.send(form);
  return () => {
    xhr.abort();
    source?.close();
  };
}
