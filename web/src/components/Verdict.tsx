import { motion } from "framer-motion";
import type { AnalysisResult } from "../api";

/** The verdict, its calibrated confidence, and the flags that qualify it. */
export function Verdict({ result, elapsedMs }: { result: AnalysisResult; elapsedMs: number | null }) {
  const fake = result.verdict === "Deepfake";
  return (
    <motion.section
      className={`card verdict ${fake ? "verdict--fake" : "verdict--real"}`}
      data-testid="verdict"
      initial={{ opacity: 0, y: 12 }}
      animate={{ opacity: 1, y: 0 }}
    >
      {result.simulated && <div className="badge badge--warn" data-testid="simulated-badge">Simulated — no model ran</div>}
      <div className="verdict__label" data-testid="verdict-label">{result.verdict}</div>
      <div className="verdict__confidence">
        <span data-testid="verdict-confidence">{result.confidence.toFixed(1)}%</span> confidence
        <span className="muted"> · P(fake) {result.probFake.toFixed(3)} (threshold {result.threshold || 0.5})</span>
      </div>
      <div className="badges">
        {result.degraded && (
          <span className="badge badge--warn" data-testid="degraded-badge">
            Degraded: {result.missingBranches.length} branch{result.missingBranches.length === 1 ? "" : "es"} missing
          </span>
        )}
        {result.earlyExit && <span className="badge" data-testid="early-exit-badge">Early exit at the tiny gate</span>}
        {result.fusionHead && <span className="badge badge--quiet">head: {result.fusionHead}</span>}
        {elapsedMs !== null && (
          <span className="badge badge--quiet" data-testid="elapsed" data-ms={Math.round(elapsedMs)}>
            {(elapsedMs / 1000).toFixed(1)} s
          </span>
        )}
      </div>
      {result.explanation && <p className="verdict__explanation" data-testid="explanation">{result.explanation}</p>}
      {(result.warnings ?? []).map((w) => (
        <p key={w} className="verdict__warning" data-testid="warning">{w}</p>
      ))}
    </motion.section>
  );
}
