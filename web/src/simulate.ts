// Simulate mode (an explicit option, off by default): plays a made-up run of the pipeline
// without the server, for demos. Its result is marked simulated and says so on screen.
import type { AnalysisResult, Handlers } from "./api";
import { KNOWN_BRANCHES as BRANCHES } from "./pipeline";

export function simulate(handlers: Handlers): () => void {
  const timers: number[] = [];
  const at = (ms: number, fn: () => void) => timers.push(window.setTimeout(fn, ms));
  const probs: Record<string, number> = {};
  for (const b of BRANCHES) probs[b] = Math.round(Math.random() * 100) / 100;
  at(100, () => handlers.onAccepted("simulated"));
  at(300, () => handlers.onProgress({ stage: "EXTRACTING_FRAMES", stageName: "Extracting frames", percent: 10, message: "Extracting frames", branch: "", branchState: "" }));
  BRANCHES.forEach((b, i) =>
    at(900 + i * 350, () =>
      handlers.onProgress({ stage: "RUNNING_MODELS", stageName: "Running models", percent: 40 + i * 8, message: `${b} ok`, branch: b, branchState: "OK" }),
    ),
  );
  at(3200, () => handlers.onProgress({ stage: "FINAL_CLASSIFICATION", stageName: "Final classification", percent: 95, message: "", branch: "", branchState: "" }));
  at(3600, () => {
    const p = BRANCHES.reduce((s, b) => s + probs[b], 0) / BRANCHES.length;
    const result: AnalysisResult = {
      verdict: p >= 0.5 ? "Deepfake" : "Authentic",
      confidence: Math.round((p >= 0.5 ? p : 1 - p) * 1000) / 10,
      probFake: p,
      threshold: 0.5,
      features: {},
      branches: Object.fromEntries(
        BRANCHES.map((b) => [b, { status: "OK" as const, prob: probs[b], features: {}, model: `${b}-demo`, modelVersion: "sim", detail: "", latencyMs: 0 }]),
      ),
      missingBranches: [],
      degraded: false,
      earlyExit: false,
      fromCache: false,
      warnings: [],
      explanation: "Simulated result: no model looked at this file.",
      timingsMs: {},
      fusionHead: "simulated",
      fusionMode: "logreg",
      method: "fusion",
      analysisId: "simulated",
      traceId: "",
      clip: null,
      simulated: true,
    };
    handlers.onResult(result);
  });
  return () => timers.forEach((t) => window.clearTimeout(t));
}
