/**
 * The operator-chaos simulation's view of the world: a seeded PRNG (so a
 * sequence replays from its seed), the workspace of one sequence (master
 * tree, target, state dirs, flag dir, settings file), and what the checker
 * knows independently of the program: the master's history of states, the
 * slave-local files the excludes protect, and whether an operator's `pause`
 * returned 0.
 */
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { readTree, type TreeSpec, writeTree } from '../helpers/sshd.js';

/** mulberry32: small, fast, and the same sequence on every machine for a seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Rng {
  next(): number;
  int(n: number): number;
  pick<T>(items: readonly T[]): T;
}

export function rngFor(seed: number): Rng {
  const next = prng(seed);
  return { next, int: (n) => Math.floor(next() * n), pick: (items) => items[Math.floor(next() * items.length)]! };
}

// ---------------------------------------------------------------------------
// Excludes, judged by the checker's own small matcher (not the program's filter)

/** The program's defaults, the settings file's XROAD_SYNC_OPTS, and the command-line one some steps add. */
export const DEFAULT_EXCLUDES = ['db.properties', '/conf.d/node.ini', '*.tmp', '/postgresql', '/nginx', '/globalconf', '/jetty', '/gpghome'];
export const SETTINGS_EXCLUDE = '*.bak';
export const COMMAND_LINE_EXCLUDE = '*.old';
const EVERY_EXCLUDE = [...DEFAULT_EXCLUDES, SETTINGS_EXCLUDE, COMMAND_LINE_EXCLUDE];

function globRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|\\]/g, '\\$&')
    .replace(/\*/g, '[^/]*')
    .replace(/\?/g, '[^/]');
  return new RegExp(`^${body}$`);
}

/** rsync's rule for these simple patterns: anchored ones match a path from the root, others a name at any depth; a match excludes the subtree. */
export function excludedBy(rel: string, patterns: readonly string[]): boolean {
  const parts = rel.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const prefix = parts.slice(0, i).join('/');
    const name = parts[i - 1]!;
    for (const p of patterns) {
      if (p.startsWith('/') ? globRegExp(p.slice(1)).test(prefix) : globRegExp(p).test(name)) return true;
    }
  }
  return false;
}

/** Whether a path may differ between master and target in some pass of the simulation. */
export const mayDiffer = (rel: string): boolean => excludedBy(rel, EVERY_EXCLUDE);

/** Slave-local files under the excludes always in effect (defaults and settings file): never to be changed. */
export const PROTECTED: TreeSpec = {
  'conf.d/node.ini': '[node]\ntype=slave\n',
  'db.properties': 'db.password=slave-only\n',
  'local.bak': 'slave backup\n',
  'signer/keys.bak': 'slave key backup\n',
};

export const INITIAL_MASTER: TreeSpec = {
  'conf.d/local.ini': '[signer]\nport=5558\n',
  'conf.d/node.ini': '[node]\ntype=master\n',
  'db.properties': 'db.password=master\n',
  'local.bak': 'master backup\n',
  'notes.old': 'old notes\n',
  'serverconf.xml': '<conf/>\n',
  'signer/keyconf.xml': '<keyconf v="0"/>\n',
  'signer/devices.ini': '[softtoken]\n',
};

// ---------------------------------------------------------------------------
// Tree views

/** A canonical text of a tree without the paths that may differ; directory mtimes left out (excluded children touch them). */
export async function syncedView(root: string): Promise<string> {
  const tree = await readTreeSettled(root);
  const kept: Array<[string, unknown]> = [];
  for (const [rel, e] of tree) {
    if (mayDiffer(rel)) continue;
    kept.push([rel, e.type === 'dir' ? { type: 'dir', mode: e.mode } : e]);
  }
  return JSON.stringify(kept);
}

/** readTree, again when an entry vanished under the walk (a running daemon's temp file): bounded. */
async function readTreeSettled(root: string): Promise<Awaited<ReturnType<typeof readTree>>> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await readTree(root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 20) throw err;
    }
  }
}

/** The protected files as they are on the target (null: missing). */
export async function protectedView(target: string): Promise<Record<string, string | null>> {
  const out: Record<string, string | null> = {};
  for (const rel of Object.keys(PROTECTED)) {
    out[rel] = await fs.readFile(path.join(target, rel), 'utf8').catch(() => null);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Workspace

export interface Workspace {
  readonly base: string;
  readonly source: string;
  readonly target: string;
  readonly stateDir: string;
  /** The state dir of the "second writer" (another operator's pass with its own state). */
  readonly otherStateDir: string;
  /** Stands for /var/tmp: the daemon's namespace replaces it, as PrivateTmp does. */
  readonly varTmp: string;
  readonly flagDir: string;
  readonly flagFile: string;
  readonly logFile: string;
  readonly settingsFile: string;
  /** A copy of the target taken after the first pass: what "restore from backup" brings back. */
  readonly backup: string;
}

export async function makeWorkspace(base: string): Promise<Workspace> {
  const varTmp = path.join(base, 'vartmp');
  const ws: Workspace = {
    base,
    source: path.join(base, 'master'),
    target: path.join(base, 'target'),
    stateDir: path.join(base, 'state'),
    otherStateDir: path.join(base, 'state-other'),
    varTmp,
    flagDir: path.join(varTmp, 'xroad'),
    flagFile: path.join(varTmp, 'xroad', 'sync-disabled'),
    logFile: path.join(base, 'slave-sync.log'),
    settingsFile: path.join(base, 'xroad-sync.settings'),
    backup: path.join(base, 'target-backup'),
  };
  await writeTree(ws.source, INITIAL_MASTER);
  await writeTree(ws.target, PROTECTED);
  await fs.mkdir(ws.flagDir, { recursive: true });
  await fs.writeFile(ws.settingsFile, `XROAD_SYNC_OPTS="--exclude ${SETTINGS_EXCLUDE}"\n`);
  return ws;
}

/** What the checker believes, updated by the steps it runs. */
export class Model {
  /** Synced views of every state the master has been in. */
  readonly masterHistory = new Set<string>();
  /** The same states in order (repeats kept): a pass must end in one no older than its start. */
  readonly masterStates: string[] = [];
  latestMaster = '';
  /** Set when `pause` returned 0; cleared when a resume starts or the flag goes away by other means. */
  paused = false;
  /** The target's synced view when the pause took hold, moved on only by the harness's own local edits. */
  pausedTarget = '';
  /** A crash journal existed when the pause took hold: rolling it forward is allowed while paused. */
  journalAtPause = false;
  /**
   * The target may rightly be in no master state: a local edit not yet
   * followed by a successful pass, or a crash journal lost with the state dir.
   */
  localEditPending = false;
  /** The state dir was removed while the current daemon ran. */
  stateDirLostUnderDaemon = false;
  /** A local in-place edit that kept size and mtime, not yet undone: no quick check can see it. */
  invisibleEdit = false;

  async recordMaster(source: string): Promise<void> {
    this.latestMaster = await syncedView(source);
    this.masterHistory.add(this.latestMaster);
    this.masterStates.push(this.latestMaster);
  }

  /** Where a pass starting now begins in masterStates. */
  mark(): number {
    return this.masterStates.length - 1;
  }

  /** Whether `view` is a master state from `mark` on: what a pass that started at `mark` may leave. */
  isStateSince(view: string, mark: number): boolean {
    return this.masterStates.indexOf(view, Math.max(0, mark)) >= 0;
  }
}

export const journalExists = (ws: Workspace): boolean => existsSync(path.join(ws.stateDir, 'commit-journal.json'));
