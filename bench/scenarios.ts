/**
 * The scenarios, run with the tools alternating: every round edits the
 * master (if the scenario does) once, then each tool syncs its own target,
 * in an order rotated per round so no tool always runs first (cold caches)
 * or last. Warm-up rounds are run the same way and not recorded.
 */

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Sample, Tool } from './tools.js';
import { type BenchTree, editFiles } from './tree.js';

export type ScenarioId = 'initial' | 'no-change' | 'one-file' | '100-files';

export interface Scenario {
  readonly id: ScenarioId;
  readonly label: string;
  /** Empty the target before every run. */
  readonly fresh: boolean;
  /** Files edited on the master before every round. */
  readonly edits: number;
}

export const SCENARIOS: readonly Scenario[] = [
  { id: 'initial', label: 'initial sync (empty target)', fresh: true, edits: 0 },
  { id: 'no-change', label: 'no change', fresh: false, edits: 0 },
  { id: 'one-file', label: 'one file changed', fresh: false, edits: 1 },
  { id: '100-files', label: '100 files changed', fresh: false, edits: 100 },
];

export interface Cell {
  readonly tree: BenchTree['name'];
  readonly scenario: ScenarioId;
  readonly tool: string;
  readonly samples: Sample[];
  /** Warm-up runs (rsync logs its wire bytes in these). */
  readonly probes: Sample[];
  /** Differences between target and master after the scenario (should be none). */
  mismatches: string[];
}

export interface RunOptions {
  readonly runs: number;
  readonly warmups: number;
  readonly scenarios: readonly ScenarioId[];
  readonly progress: (line: string) => void;
}

let editRound = 0;

export async function runTree(tree: BenchTree, source: string, tools: readonly Tool[], opts: RunOptions): Promise<Cell[]> {
  const cells: Cell[] = [];
  for (const tool of tools) {
    const d = tool.dirs(tree.name);
    await fs.mkdir(d.target, { recursive: true });
    await fs.mkdir(d.state, { recursive: true });
  }
  for (const scenario of SCENARIOS) {
    const byTool = new Map(
      tools.map((t) => [
        t.id,
        { tree: tree.name, scenario: scenario.id, tool: t.id, samples: [] as Sample[], probes: [] as Sample[], mismatches: [] as string[] },
      ]),
    );
    const wanted = opts.scenarios.includes(scenario.id);
    // A skipped scenario still leaves every target synced for the next one: one untimed round.
    const rounds = wanted ? opts.warmups + opts.runs : scenario.fresh ? 1 : 0;
    for (let round = 0; round < rounds; round++) {
      const recorded = wanted && round >= opts.warmups;
      if (scenario.edits > 0) await editFiles(source, tree, scenario.edits, ++editRound);
      const order = rotate(tools, round);
      for (const tool of order) {
        if (scenario.fresh) await resetTarget(tool.dirs(tree.name).target);
        const sample = await tool.run(tree.name, source, !recorded);
        if (recorded) byTool.get(tool.id)!.samples.push(sample);
        else if (wanted) byTool.get(tool.id)!.probes.push(sample);
      }
      if (wanted) opts.progress(`${tree.name}/${scenario.id}: ${recorded ? `run ${round - opts.warmups + 1}/${opts.runs}` : 'warm-up'} done`);
    }
    if (!wanted) continue;
    const expected = await snapshot(source, true);
    for (const tool of tools) {
      const cell = byTool.get(tool.id)!;
      cell.mismatches = compare(expected, await snapshot(tool.dirs(tree.name).target, false));
      if (cell.mismatches.length > 0)
        opts.progress(`WARNING ${tree.name}/${scenario.id}/${tool.id}: target differs from master: ${cell.mismatches.slice(0, 5).join('; ')}`);
      cells.push(cell);
    }
  }
  return cells;
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/**
 * An empty target, with the removal of the last run's tree on disk before the next run starts: else
 * the first tool to flush the filesystem (xroad-sync's syncfs after staging) also writes out the
 * bench's own deletions, which rsync (no flush) never pays for.
 */
async function resetTarget(target: string): Promise<void> {
  await fs.rm(target, { recursive: true, force: true });
  await fs.mkdir(target, { mode: 0o751 });
  spawnSync('sync', ['-f', target]);
}

// ------------------------------------------------------------------ verification

interface Snap {
  type: string;
  mode: number;
  mtime: number;
  size: number;
  hash?: string;
  link?: string;
}

const EXCLUDED = /^(globalconf|gpghome|postgresql|jetty|nginx)(\/|$)|(^|\/)db\.properties$|\.tmp(\/|$)|^conf\.d\/node\.ini$/;

/** Every entry below root (master: minus the guide's excludes) with type, mode, mtime, size and content hash. */
async function snapshot(root: string, filter: boolean): Promise<Map<string, Snap>> {
  const out = new Map<string, Snap>();
  const walk = async (rel: string): Promise<void> => {
    const full = rel ? path.join(root, rel) : root;
    const names = await fs.readdir(full);
    await Promise.all(
      names.map(async (name) => {
        const r = rel ? `${rel}/${name}` : name;
        if (filter && EXCLUDED.test(r)) return;
        const p = path.join(root, r);
        const st = await fs.lstat(p);
        const base = { mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) };
        if (st.isDirectory()) {
          out.set(r, { type: 'dir', ...base, size: 0 });
          await walk(r);
        } else if (st.isSymbolicLink()) {
          out.set(r, { type: 'symlink', ...base, size: 0, link: await fs.readlink(p) });
        } else {
          out.set(r, {
            type: 'file',
            ...base,
            size: st.size,
            hash: createHash('sha1')
              .update(await fs.readFile(p))
              .digest('hex'),
          });
        }
      }),
    );
  };
  await walk('');
  return out;
}

function compare(expected: Map<string, Snap>, actual: Map<string, Snap>): string[] {
  const problems: string[] = [];
  for (const [p, e] of expected) {
    const a = actual.get(p);
    if (!a) problems.push(`missing ${p}`);
    else if (a.type !== e.type) problems.push(`${p}: ${a.type}, master has ${e.type}`);
    else if (a.hash !== e.hash || a.link !== e.link) problems.push(`${p}: content differs`);
    else if (a.mode !== e.mode) problems.push(`${p}: mode ${a.mode.toString(8)}, master ${e.mode.toString(8)}`);
    else if (a.type !== 'symlink' && a.mtime !== e.mtime) problems.push(`${p}: mtime ${a.mtime}, master ${e.mtime}`);
  }
  for (const p of actual.keys()) if (!expected.has(p)) problems.push(`extra ${p}`);
  return problems;
}
