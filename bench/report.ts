/** Medians, the table, the performance targets (PASS/MISS) and the JSON record. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { median, percentile } from './measure.js';
import type { Cell, ScenarioId } from './scenarios.js';

export interface Summary {
  readonly tree: string;
  readonly scenario: ScenarioId;
  readonly tool: string;
  readonly runs: number;
  readonly wallMs: number;
  readonly wallP90Ms: number;
  readonly cpuMs: number;
  readonly maxRssMb: number | null;
  readonly wireBytes: number | null;
  readonly selfBytes: number | null;
  readonly masterCpuMs: number | null;
  /** Median wall / rsync's median wall, same tree and scenario. */
  readonly wallRatio: number | null;
  readonly cpuRatio: number | null;
  readonly mismatches: number;
}

export interface TargetCheck {
  readonly target: string;
  readonly tool: string;
  readonly value: number | null;
  readonly limit: number;
  readonly unit: 'ratio' | 'MB';
  readonly pass: boolean;
}

const nums = (xs: Array<number | null>): number[] => xs.filter((x): x is number => x !== null && Number.isFinite(x));
const medianOrNull = (xs: Array<number | null>): number | null => (nums(xs).length ? median(nums(xs)) : null);

export function summarize(cells: readonly Cell[]): Summary[] {
  const rsync = new Map(cells.filter((c) => c.tool === 'rsync').map((c) => [`${c.tree}/${c.scenario}`, c]));
  return cells.map((c) => {
    const wall = median(c.samples.map((s) => s.wallMs));
    const cpu = median(c.samples.map((s) => s.cpuMs));
    const ref = rsync.get(`${c.tree}/${c.scenario}`);
    const refWall = ref ? median(ref.samples.map((s) => s.wallMs)) : NaN;
    const refCpu = ref ? median(ref.samples.map((s) => s.cpuMs)) : NaN;
    const rss = medianOrNull(c.samples.map((s) => s.maxRssKb));
    return {
      tree: c.tree,
      scenario: c.scenario,
      tool: c.tool,
      runs: c.samples.length,
      wallMs: wall,
      wallP90Ms: percentile(
        c.samples.map((s) => s.wallMs),
        90,
      ),
      cpuMs: cpu,
      maxRssMb: rss === null ? null : Math.max(...nums(c.samples.map((s) => s.maxRssKb))) / 1024,
      wireBytes: medianOrNull(c.samples.map((s) => s.wireBytes)) ?? medianOrNull(c.probes.map((s) => s.wireBytes)),
      masterCpuMs: medianOrNull(c.samples.map((s) => s.masterCpuMs)),
      selfBytes: medianOrNull(c.samples.map((s) => s.selfBytes)),
      wallRatio: Number.isFinite(refWall) ? wall / refWall : null,
      cpuRatio: Number.isFinite(refCpu) && refCpu > 0 ? cpu / refCpu : null,
      mismatches: c.mismatches.length,
    };
  });
}

const TOOL_NAMES: Record<string, string> = {
  rsync: 'rsync',
  'xroad-sync': 'xroad-sync proc',
  'xroad-sync-bundle': 'xroad-sync bundle',
  'xroad-sync-exe': 'executable',
  'xroad-sync-daemon': 'daemon pass',
};

function fmtBytes(n: number | null): string {
  if (n === null) return 'n/a';
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}

export function table(rows: readonly Summary[]): string {
  const head = ['tree/scenario', 'tool', 'wall med', 'p90', 'CPU med', 'peak RSS', 'master CPU', 'wire bytes', 'tool-reported', 'wall ×rsync', 'CPU ×rsync'];
  const body = rows.map((r) =>
    [
      `${r.tree}/${r.scenario}`,
      TOOL_NAMES[r.tool] ?? r.tool,
      `${r.wallMs.toFixed(0)} ms`,
      `${r.wallP90Ms.toFixed(0)} ms`,
      `${r.cpuMs.toFixed(0)} ms`,
      r.maxRssMb === null ? 'n/a' : `${r.maxRssMb.toFixed(1)} MB`,
      r.masterCpuMs === null ? 'n/a' : `${r.masterCpuMs.toFixed(0)} ms`,
      fmtBytes(r.wireBytes),
      fmtBytes(r.selfBytes),
      r.tool === 'rsync' || r.wallRatio === null ? '' : r.wallRatio.toFixed(2),
      r.tool === 'rsync' || r.cpuRatio === null ? '' : r.cpuRatio.toFixed(2),
    ].concat(r.mismatches ? [`(${r.mismatches} diffs!)`] : []),
  );
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line), '', ...NOTES].join('\n');
}

const NOTES = [
  'wall/CPU: medians; CPU = user + sys of the process and the children it waited for (rsync: its ssh too); daemon pass: this process.',
  'peak RSS: largest single process (rsync: rsync or ssh, whichever is larger). master CPU: the sshd session(s) on the master.',
  'wire bytes: SSH-level both ways (xroad-sync: its socket; rsync: ssh -o LogLevel=VERBOSE "Transferred:" in the warm-up run).',
  "tool-reported: rsync's log line (protocol payload after -z); xroad-sync's pass record (daemon: cumulative over the session).",
];

/** The performance targets, for the process tools present (CLI, bundle) and the daemon pass. */
export function checkTargets(rows: readonly Summary[]): TargetCheck[] {
  const find = (tree: string, scenario: string, tool: string) => rows.find((r) => r.tree === tree && r.scenario === scenario && r.tool === tool);
  const checks: TargetCheck[] = [];
  const processTools = [...new Set(rows.map((r) => r.tool))].filter((t) => t === 'xroad-sync' || t === 'xroad-sync-bundle' || t === 'xroad-sync-exe');
  const ratio = (target: string, tree: string, scenario: ScenarioId, tool: string, limit: number): void => {
    const r = find(tree, scenario, tool);
    if (!r) return;
    checks.push({ target, tool, value: r.wallRatio, limit, unit: 'ratio', pass: r.wallRatio !== null && r.wallRatio <= limit });
  };
  for (const tool of processTools) {
    ratio('realistic initial, per process ≤ 0.6 × rsync', 'realistic', 'initial', tool, 0.6);
    ratio('realistic one-file, per process ≤ 0.6 × rsync', 'realistic', 'one-file', tool, 0.6);
    ratio('realistic no-change, per process ≤ 0.6 × rsync', 'realistic', 'no-change', tool, 0.6);
    ratio('large no-change, per process ≤ 0.6 × rsync', 'large', 'no-change', tool, 0.6);
    ratio('large initial (all fsynced) ≤ 1.0 × rsync', 'large', 'initial', tool, 1.0);
    const big = find('large', 'initial', tool);
    if (big)
      checks.push({
        target: 'large initial peak RSS ≤ 120 MB',
        tool,
        value: big.maxRssMb,
        limit: 120,
        unit: 'MB',
        pass: big.maxRssMb !== null && big.maxRssMb <= 120,
      });
  }
  ratio('realistic no-change, daemon pass ≤ 0.05 × rsync', 'realistic', 'no-change', 'xroad-sync-daemon', 0.05);
  return checks;
}

export function targetLines(checks: readonly TargetCheck[]): string {
  return checks
    .map((c) => {
      const v = c.value === null ? 'n/a' : c.unit === 'MB' ? `${c.value.toFixed(1)} MB` : c.value.toFixed(3);
      return `${c.pass ? 'PASS' : 'MISS'}  ${c.target.padEnd(50)} ${(TOOL_NAMES[c.tool] ?? c.tool).padEnd(18)} ${v}`;
    })
    .join('\n');
}

export async function saveResults(dir: string, record: Record<string, unknown>): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:]/g, '-').replace(/\..*$/, '');
  const file = path.join(dir, `${stamp}.json`);
  const text = JSON.stringify(record, null, 2) + '\n';
  await fs.writeFile(file, text);
  return file;
}
