import { motion } from "framer-motion";
import type { AnalysisResult } from "../api";

// The known branches in reading order (the gate last), then any other branch the result holds.
const ORDER = ["visual", "audio", "temporal", "sync", "mri", "tiny_gate"];
const LABELS: Record<string, string> = { tiny_gate: "Gate", sync: "Lip-sync", mri: "MRI" };

function rows(result: AnalysisResult): { key: string; label: string }[] {
  const keys = Object.keys(result.branches);
  const ordered = [...ORDER.filter((k) => keys.includes(k)), ...keys.filter((k) => !ORDER.includes(k)).sort()];
  return ordered.map((key) => ({ key, label: LABELS[key] ?? key.charAt(0).toUpperCase() + key.slice(1).replace(/_/g, " ") }));
}

function rowStatus(result: AnalysisResult, key: string): { text: string; usable: boolean } {
  const report = result.branches[key];
  if (!report || report.status === "MISSING" || result.missingBranches.includes(key)) {
    return { text: `missing${report?.detail ? `: ${report.detail}` : ""}`, usable: false };
  }
  if (report.status === "NOT_RUN") {
    return { text: result.earlyExit ? "not run: the gate exited early" : `not run${report.detail ? `: ${report.detail}` : ""}`, usable: false };
  }
  if (report.status === "NO_INPUT") return { text: report.detail || "no input", usable: false };
  if (report.status === "FALLBACK") return { text: `fallback: ${report.detail}`, usable: true };
  return { text: "", usable: true };
}

/** P(fake) per branch as bars, with the 0.5 line; missing and no-input rows say why. */
export function Breakdown({ result }: { result: AnalysisResult }) {
  return (
    <section className="card breakdown" data-testid="breakdown" aria-label="Per-branch breakdown">
      <h2>Per-branch breakdown</h2>
      <div className="chart">
        {rows(result).map(({ key, label }, i) => {
          const report = result.branches[key];
          const { text, usable } = rowStatus(result, key);
          const p = usable && report ? report.prob : 0;
          return (
            <div className="chart__row" key={key} data-testid={`bar-${key}`} data-usable={usable}>
              <span className="chart__label">{label}</span>
              <div className="chart__track">
                <div className="chart__mid" aria-hidden />
                {usable && (
                  <motion.div
                    className={`chart__bar ${p >= 0.5 ? "chart__bar--fake" : "chart__bar--real"}`}
                    initial={{ width: 0 }}
                    animate={{ width: `${Math.max(p * 100, 1)}%` }}
                    transition={{ delay: i * 0.06, duration: 0.5 }}
                  />
                )}
              </div>
              <span className="chart__value">{usable ? `${(p * 100).toFixed(0)}%` : "—"}</span>
              {text && <span className="chart__note">{text}</span>}
            </div>
          );
        })}
      </div>
      <p className="muted small">Bars show each branch's probability that the clip is fake; the line marks 50%.</p>
      <details className="models" open>
        <summary>Model versions</summary>
        <table data-testid="model-versions">
          <tbody>
            {rows(result).filter(({ key }) => result.branches[key]?.model).map(({ key, label }) => {
              const report = result.branches[key];
              return (
                <tr key={key}>
                  <td>{label}</td>
                  <td>{report.model}</td>
                  <td>v{report.modelVersion}</td>
                  <td className="muted">{report.latencyMs ? `${report.latencyMs.toFixed(0)} ms` : ""}</td>
                </tr>
              );
            })}
            <tr>
              <td>Fusion</td>
              <td colSpan={3}>{result.fusionHead}</td>
            </tr>
          </tbody>
        </table>
      </details>
    </section>
  );
}
