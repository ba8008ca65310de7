// The pipeline's node states, derived from the real progress events (a pure reducer).
// The branches are whatever the mesh runs: the six known ones are shown from the start, and
// any other branch appears as soon as a progress event or the result names it.
import type { AnalysisResult, ProgressEvent } from "./api";

export const GATE = "tiny_gate";
export const KNOWN_BRANCHES = [GATE, "visual", "audio", "temporal", "sync", "mri"];
export type NodeName = string;
export type NodeState = "idle" | "active" | "done" | "missing" | "noinput" | "skipped" | "failed";

const LABELS: Record<string, string> = {
  ingest: "Ingest",
  tiny_gate: "Tiny gate",
  visual: "Visual",
  audio: "Audio",
  temporal: "Temporal",
  sync: "Lip-sync",
  mri: "MRI",
  fusion: "Fusion",
};

/** A node's label: the known ones by name, any other branch by its own name. */
export function nodeLabel(name: NodeName): string {
  return LABELS[name] ?? name.replace(/_/g, " ");
}

export type PipelineState = Record<NodeName, NodeState>;

/** The branch names a pipeline state holds, known ones first. */
export function branchesOf(state: PipelineState): string[] {
  return Object.keys(state).filter((n) => n !== "ingest" && n !== "fusion");
}

export function initialPipeline(): PipelineState {
  return Object.fromEntries(["ingest", ...KNOWN_BRANCHES, "fusion"].map((n) => [n, "idle"])) as PipelineState;
}

const NODE_STATES: Record<string, NodeState> = {
  OK: "done",
  FALLBACK: "done",
  NO_INPUT: "noinput",
  MISSING: "missing",
  NOT_RUN: "skipped",
};

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
      for (const b of branchesOf(next)) if (next[b] === "idle") next[b] = "active";
      if (event.branch) next[event.branch] = NODE_STATES[event.branchState] ?? "done";
      break;
    case "FINAL_CLASSIFICATION":
      next.ingest = "done";
      for (const b of branchesOf(next)) if (next[b] === "active" || next[b] === "idle") next[b] = "skipped";
      next.fusion = "active";
      break;
  }
  return next;
}

export function applyResult(state: PipelineState, result: AnalysisResult): PipelineState {
  const next: PipelineState = { ...state, ingest: "done", fusion: "done" };
  for (const b of new Set([...branchesOf(state), ...Object.keys(result.branches)])) {
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
  for (const n of Object.keys(next)) if (next[n] === "active") next[n] = "failed";
  return next;
}
