// The pipeline's node states, derived from the real progress events (a pure reducer).
import type { AnalysisResult, ProgressEvent } from "./api";

export const HEAVY_BRANCHES = ["visual", "audio", "temporal", "sync", "mri"] as const;
export const BRANCHES = ["tiny_gate", ...HEAVY_BRANCHES] as const;
export const NODES = ["ingest", ...BRANCHES, "fusion"] as const;
export type NodeName = (typeof NODES)[number];
export type NodeState = "idle" | "active" | "done" | "missing" | "noinput" | "skipped" | "failed";

export const NODE_LABELS: Record<NodeName, string> = {
  ingest: "Ingest",
  tiny_gate: "Tiny gate",
  visual: "Visual",
  audio: "Audio",
  temporal: "Temporal",
  sync: "Lip-sync",
  mri: "MRI",
  fusion: "Fusion",
};

export type PipelineState = Record<NodeName, NodeState>;

export function initialPipeline(): PipelineState {
  return Object.fromEntries(NODES.map((n) => [n, "idle"])) as PipelineState;
}

function branchStateFromMessage(message: string): NodeState {
  if (/missing|late|unavailable|failed/.test(message)) return "missing";
  if (/no input|no_input/.test(message)) return "noinput";
  if (/not run|skipped/.test(message)) return "skipped";
  return "done";
}

export function applyProgress(state: PipelineState, event: ProgressEvent): PipelineState {
  const next = { ...state };
  switch (event.stage) {
    case "QUEUED":
      break;
    case "EXTRACTING_FRAMES":
      next.ingest = "active";
      break;
    case "RUNNING_MODELS":
      next.ingest = "done";
      for (const b of BRANCHES) if (next[b] === "idle") next[b] = "active";
      if (event.branch && event.branch in next) {
        next[event.branch as NodeName] = branchStateFromMessage(event.message);
      }
      break;
    case "FINAL_CLASSIFICATION":
      next.ingest = "done";
      for (const b of BRANCHES) if (next[b] === "active" || next[b] === "idle") next[b] = "skipped";
      next.fusion = "active";
      break;
  }
  return next;
}

export function applyResult(state: PipelineState, result: AnalysisResult): PipelineState {
  const next = { ...state, ingest: "done" as NodeState, fusion: "done" as NodeState };
  for (const b of BRANCHES) {
    const report = result.branches[b];
    if (!report || report.status === "MISSING" || result.missingBranches.includes(b)) next[b] = "missing";
    else if (report.status === "NOT_RUN") next[b] = "skipped";
    else if (report.status === "NO_INPUT") next[b] = "noinput";
    else next[b] = "done";
  }
  return next;
}

export function applyError(state: PipelineState): PipelineState {
  const next = { ...state };
  for (const n of NODES) if (next[n] === "active") next[n] = "failed";
  return next;
}
