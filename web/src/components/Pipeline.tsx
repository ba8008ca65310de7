import { motion } from "framer-motion";
import { GATE, branchesOf, nodeLabel, type NodeName, type PipelineState } from "../pipeline";

const STATE_TEXT: Record<string, string> = {
  idle: "waiting",
  active: "running",
  done: "done",
  missing: "missing",
  noinput: "no input",
  skipped: "skipped",
  failed: "failed",
};

function Node({ name, state }: { name: NodeName; state: string }) {
  return (
    <motion.div
      className={`node node--${state}`}
      data-testid={`node-${name}`}
      data-state={state}
      layout
      animate={state === "active" ? { scale: [1, 1.06, 1] } : { scale: 1 }}
      transition={state === "active" ? { repeat: Infinity, duration: 1.1 } : { duration: 0.25 }}
    >
      <span className="node__label">{nodeLabel(name)}</span>
      <span className="node__state">{STATE_TEXT[state]}</span>
    </motion.div>
  );
}

function Arrow({ lit }: { lit: boolean }) {
  return (
    <div className="arrow" aria-hidden>
      <motion.div className="arrow__fill" initial={false} animate={{ scaleX: lit ? 1 : 0 }} transition={{ duration: 0.4 }} />
    </div>
  );
}

interface Props {
  nodes: PipelineState;
  percent: number;
  stageName: string;
  message: string;
}

/** ingest -> tiny gate -> the heavy branches in parallel -> fusion, lit by real events. */
export function Pipeline({ nodes, percent, stageName, message }: Props) {
  const lit = (n: NodeName) => nodes[n] !== undefined && nodes[n] !== "idle";
  const heavy = branchesOf(nodes).filter((b) => b !== GATE);
  return (
    <section className="card pipeline" aria-label="Pipeline">
      <div className="pipeline__flow">
        <Node name="ingest" state={nodes.ingest} />
        <Arrow lit={lit(GATE)} />
        <Node name={GATE} state={nodes[GATE]} />
        <Arrow lit={heavy.some(lit)} />
        <div className="pipeline__heavy">
          {heavy.map((b) => (
            <Node key={b} name={b} state={nodes[b]} />
          ))}
        </div>
        <Arrow lit={lit("fusion")} />
        <Node name="fusion" state={nodes.fusion} />
      </div>
      <div className="progress" role="progressbar" aria-valuenow={percent} aria-valuemin={0} aria-valuemax={100}>
        <motion.div className="progress__bar" initial={false} animate={{ width: `${percent}%` }} transition={{ duration: 0.4 }} />
      </div>
      <div className="pipeline__stage" data-testid="stage-name">
        {stageName} <span className="muted">{percent.toFixed(0)}%{message ? ` · ${message}` : ""}</span>
      </div>
    </section>
  );
}
