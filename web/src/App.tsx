import { AnimatePresence, motion } from "framer-motion";
import { useEffect, useRef, useState } from "react";
import { analyze, checkApiKey, storeApiKey, storedApiKey, type AnalysisResult, type ApiError, type Handlers, type ProgressEvent } from "./api";
import { ApiKey, type KeyState } from "./components/ApiKey";
import { Breakdown } from "./components/Breakdown";
import { Pipeline } from "./components/Pipeline";
import { UploadZone } from "./components/UploadZone";
import { Verdict } from "./components/Verdict";
import { applyError, applyProgress, applyResult, initialPipeline, type PipelineState } from "./pipeline";
import { simulate } from "./simulate";

type Phase = "idle" | "uploading" | "running" | "done" | "error";

const ERROR_TITLES: Record<string, string> = {
  too_large: "File too large",
  too_long: "Clip too long",
  unsupported_media_type: "Not a file we can analyze",
  empty_file: "Empty file",
  unprocessable: "Nothing we could analyze in this file",
  busy: "The server is busy",
  unavailable: "The analysis service is unavailable",
  not_ready: "The analysis service is not ready",
  timeout: "The analysis took too long",
  network: "Connection problem",
  forbidden: "This API key may not start analyses",
  rate_limited: "Too many analyses for this API key",
};

/** Notices for inputs that are normal but limit the answer: no face, no audio. */
function inputNotices(result: AnalysisResult): string[] {
  const notes: string[] = [];
  const visual = result.branches.visual;
  if (visual && (visual.status === "NO_INPUT" || visual.status === "FALLBACK")) {
    notes.push(`No face found${visual.detail ? ` (${visual.detail})` : ""}: the face branches used what they could.`);
  }
  const audio = result.branches.audio;
  if ((audio && audio.status === "NO_INPUT") || (result.clip && !result.clip.hasAudio)) {
    notes.push("No audio track: the audio and lip-sync branches could not score this file.");
  }
  return notes;
}

export default function App() {
  const [phase, setPhase] = useState<Phase>("idle");
  const [simulated, setSimulated] = useState(false);
  const [fileName, setFileName] = useState("");
  const [upload, setUpload] = useState(0);
  const [nodes, setNodes] = useState<PipelineState>(initialPipeline);
  const [progress, setProgress] = useState<ProgressEvent | null>(null);
  const [result, setResult] = useState<AnalysisResult | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [elapsed, setElapsed] = useState<number | null>(null);
  const [analysisId, setAnalysisId] = useState("");
  const [apiKey, setApiKey] = useState(storedApiKey);
  const [keyState, setKeyState] = useState<KeyState>("checking");
  const stop = useRef<(() => void) | null>(null);
  const started = useRef(0);

  useEffect(() => () => stop.current?.(), []);
  // Whether this gateway wants a key, and whether the one this tab holds will do.
  useEffect(() => {
    let current = true;
    void checkApiKey(apiKey).then((state) => current && setKeyState(state));
    return () => {
      current = false;
    };
  }, [apiKey]);

  function chooseKey(key: string) {
    storeApiKey(key);
    setKeyState("checking");
    setApiKey(key);
  }

  function start(file: File) {
    stop.current?.();
    setFileName(file.name);
    setPhase("uploading");
    setUpload(0);
    setNodes(initialPipeline());
    setProgress(null);
    setResult(null);
    setError(null);
    setElapsed(null);
    setAnalysisId("");
    started.current = performance.now();
    const handlers: Handlers = {
      onUploadProgress: setUpload,
      onAccepted: (id) => {
        setAnalysisId(id);
        setPhase("running");
      },
      onProgress: (e) => {
        setProgress(e);
        setNodes((n) => applyProgress(n, e));
      },
      onResult: (r) => {
        setResult(r);
        setNodes((n) => applyResult(n, r));
        setElapsed(performance.now() - started.current);
        setPhase("done");
      },
      onError: (e) => {
        if (e.httpStatus === 401) {
          // The key panel says what to do; no second alert for the same thing.
          setKeyState(apiKey ? "rejected" : "needed");
          setPhase("idle");
          return;
        }
        setError(e);
        setNodes(applyError);
        setPhase("error");
      },
    };
    stop.current = simulated ? simulate(handlers) : analyze(file, handlers, apiKey);
  }

  const busy = phase === "uploading" || phase === "running";
  const keyMissing = !simulated && (keyState === "needed" || keyState === "rejected");
  const percent = phase === "done" ? 100 : progress?.percent ?? 0;
  const stageName = phase === "uploading" ? `Uploading ${(upload * 100).toFixed(0)}%` : phase === "done" ? "Final classification" : progress?.stageName ?? "Queued";

  return (
    <main className="app" data-testid="app" data-phase={phase} data-analysis-id={analysisId} data-key-state={keyState}>
      <header className="header">
        <h1>Deepfake check</h1>
        <p className="muted">Upload a clip: six detectors look at the faces, the voice, their timing and the lip-sync, and a calibrated fusion gives the verdict.</p>
      </header>

      <ApiKey state={keyState} onSave={chooseKey} onForget={() => chooseKey("")} />
      <UploadZone disabled={busy || keyMissing} onFile={start} />
      <label className="option">
        <input type="checkbox" data-testid="simulate-toggle" checked={simulated} onChange={(e) => setSimulated(e.target.checked)} disabled={busy} />
        Simulate mode (a made-up demo run; no file is sent and no model runs)
      </label>

      {phase !== "idle" && !(phase === "error" && !analysisId) && (
        <>
          <div className="file muted" data-testid="file-name">{fileName}</div>
          <Pipeline nodes={nodes} percent={percent} stageName={stageName} message={phase === "running" ? progress?.message ?? "" : ""} />
        </>
      )}

      <AnimatePresence>
        {error && (
          <motion.section className="card error" role="alert" data-testid="error" data-code={error.code} initial={{ opacity: 0 }} animate={{ opacity: 1 }} exit={{ opacity: 0 }}>
            <h2 data-testid="error-title">{ERROR_TITLES[error.code] ?? "The analysis failed"}</h2>
            <p data-testid="error-message">{error.message}</p>
            {error.retryAfter !== undefined && <p className="muted">Try again in {error.retryAfter} s.</p>}
            {error.httpStatus > 0 && <p className="muted small">HTTP {error.httpStatus} · {error.code}</p>}
          </motion.section>
        )}
      </AnimatePresence>

      {result && (
        <div className="results">
          <Verdict result={result} elapsedMs={elapsed} />
          {inputNotices(result).map((n) => (
            <div className="card notice" data-testid="input-notice" key={n}>{n}</div>
          ))}
          <Breakdown result={result} />
        </div>
      )}

      <footer className="footer muted small">
        API: <a href="/docs">/docs</a> · a verdict is a calibrated estimate, not proof.
      </footer>
    </main>
  );
}
