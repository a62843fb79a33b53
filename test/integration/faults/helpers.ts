/**
 * Shared pieces of the fault suites (test/integration/faults/*.test.ts): workspaces,
 * the "master minus default excludes" expectation, an embedded master with
 * hooks and its own keys, in-process passes over a warm session, a seeded
 * PRNG, and a child's peak memory. Every wait here is bounded.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runPass } from '../../../src/pass/run-pass.js';
import type { PassHooks, PassReporter, PassResult } from '../../../src/pass/types.js';
import { WarmSessionProvider } from '../../../src/remote/provider.js';
import { generateEd25519 } from '../../../src/serve/keys.js';
import { type ServerHooks, startEmbeddedMaster } from '../../../src/serve/sftp-server.js';
import { type PassSettings, type RawPassOptions, resolvePassSettings } from '../../../src/settings/pass-settings.js';
import { leftoverTemps, obj } from '../../helpers/run-sync.js';
import { makeTempDir, readTree, suiteMaster, type TestMaster, type TreeEntrySnapshot } from '../../helpers/sshd.js';

export interface Workspace {
  /** Parent of everything below; removed by cleanup(). */
  readonly root: string;
  readonly source: string;
  readonly target: string;
  readonly state: string;
  /** An empty directory next to the target: a hostile master must never write here. */
  readonly sentinel: string;
}

/** Registers temp dirs for one suite and removes them all at the end. */
/**
 * A fault suite's fixture: one OpenSSH master (handed to `onStarted`),
 * scratch workspaces, and result lines printed as one summary after the
 * suite, so a CI log shows what each fault did.
 */
export function faultSuite(name: string, onStarted: (master: TestMaster) => void): { scratch: Scratch; results: string[] } {
  const scratch = new Scratch();
  const results: string[] = [];
  suiteMaster(onStarted, {
    afterAll: async () => {
      await scratch.cleanup();
      console.log(`${name}: ${results.join('; ')}`);
    },
  });
  return { scratch, results };
}

export class Scratch {
  private readonly dirs: string[] = [];

  async workspace(prefix = 'xroad-sync-fault-'): Promise<Workspace> {
    const root = await makeTempDir(prefix);
    this.dirs.push(root);
    const ws = {
      root,
      source: path.join(root, 'src'),
      target: path.join(root, 'dst'),
      state: path.join(root, 'state'),
      sentinel: path.join(root, 'sentinel'),
    };
    await Promise.all([mkdir(ws.source), mkdir(ws.target), mkdir(ws.state), mkdir(ws.sentinel)]);
    return ws;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.dirs.map((d) => rm(d, { recursive: true, force: true })));
  }
}

/** The guide's default excludes, spelled out for the trees these suites build (independent of src/filter). */
export function defaultExcluded(rel: string): boolean {
  const parts = rel.split('/');
  if (['postgresql', 'nginx', 'globalconf', 'jetty', 'gpghome'].includes(parts[0]!)) return true;
  if (rel === 'conf.d/node.ini' || rel.startsWith('conf.d/node.ini/')) return true;
  return parts.some((p) => p === 'db.properties' || p.endsWith('.tmp'));
}

export type Snapshot = Map<string, TreeEntrySnapshot>;

/** The master's tree (root included) without what the default excludes keep from the slave. */
export async function expectedTree(source: string, read: (dir: string) => Promise<Snapshot> = snapshot): Promise<Snapshot> {
  return withoutExcluded(await read(source));
}

export function withoutExcluded(tree: Snapshot): Snapshot {
  return new Map([...tree].filter(([p]) => p === '' || !defaultExcluded(p)));
}

export const snapshot = (dir: string): Promise<Snapshot> => readTree(dir, { includeRoot: true });

/**
 * readTree's snapshot (same entry format, root included), read with
 * synchronous calls: for the small trees of these suites that is several
 * times faster than a promise per call, and the soak takes two per pass.
 * `contents`: 'text' as readTree gives it, 'hash' a SHA-1 in its place (enough
 * to compare two trees, and cheaper), 'none' leaves it out.
 */
export async function quickSnapshot(root: string, contents: 'text' | 'hash' | 'none' = 'text'): Promise<Snapshot> {
  const out: Array<[string, TreeEntrySnapshot]> = [];
  const walk = (rel: string): void => {
    const full = rel === '' ? root : path.join(root, rel);
    const st = lstatSync(full);
    const base = { mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) };
    if (st.isFile()) {
      const entry: TreeEntrySnapshot = { type: 'file', ...base, size: st.size };
      if (contents !== 'none') {
        const bytes = readFileSync(full);
        if (contents === 'hash') {
          entry.content = `sha1:${createHash('sha1').update(bytes).digest('hex')}`;
        } else {
          const text = bytes.toString('utf8');
          entry.content = Buffer.from(text, 'utf8').equals(bytes) ? text : `base64:${bytes.toString('base64')}`;
        }
      }
      out.push([rel, entry]);
    } else if (st.isSymbolicLink()) {
      out.push([rel, { type: 'symlink', ...base, size: st.size, linkTarget: readlinkSync(full) }]);
    } else if (st.isDirectory()) {
      out.push([rel, { type: 'dir', ...base, size: 0 }]);
      for (const name of readdirSync(full)) walk(rel === '' ? name : `${rel}/${name}`);
    } else {
      out.push([rel, { type: 'other', ...base, size: 0 }]);
    }
  };
  walk('');
  out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return new Map(out);
}

/** Paths on which two snapshots differ (for short failure messages). */
export function differences(a: Snapshot, b: Snapshot): string[] {
  const out: string[] = [];
  for (const p of new Set([...a.keys(), ...b.keys()])) {
    if (JSON.stringify(a.get(p)) !== JSON.stringify(b.get(p))) out.push(p === '' ? '(root)' : p);
  }
  return out.sort();
}

/** target == master minus excludes, no temp files, no crash journal. */
export async function assertConverged(ws: Pick<Workspace, 'source' | 'target' | 'state'>, what: string): Promise<void> {
  const [want, got] = await Promise.all([expectedTree(ws.source, quickSnapshot), quickSnapshot(ws.target)]);
  const diff = differences(want, got);
  if (diff.length > 0) assert.deepEqual(obj(got), obj(want), `${what}: target differs from the master at ${diff.slice(0, 10).join(', ')}`);
  assert.deepEqual(await leftoverTemps(ws.target), [], `${what}: temp files left in the target`);
  assert.equal(existsSync(journalOf(ws.state)), false, `${what}: crash journal left behind`);
}

export const journalOf = (stateDir: string): string => path.join(stateDir, 'commit-journal.json');

/** Names directly in `dir`, sorted. */
export async function namesIn(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

/** `cp -a`: contents, modes, mtimes, symlinks as they are. */
export function copyTree(from: string, to: string): void {
  const r = spawnSync('cp', ['-a', `${from}/.`, to], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`cp -a ${from} ${to} failed: ${r.stderr || r.error?.message}`);
}

// ---------------------------------------------------------------------------
// In-process passes (soak, and the convergence pass after each kill)

export interface InProcessPasses {
  readonly settings: PassSettings;
  readonly provider: WarmSessionProvider;
  /** Notices and failures the last pass reported. */
  readonly notices: string[];
  run(hooks?: PassHooks): Promise<PassResult>;
  close(): Promise<void>;
}

/**
 * runPass with a no-op reporter over one warm session, as the daemon runs it.
 * A `shared` provider (same master and source) is reused and left open by close().
 */
export function inProcessPasses(
  master: TestMaster,
  ws: Pick<Workspace, 'source' | 'target' | 'state'>,
  extra: RawPassOptions = {},
  shared?: WarmSessionProvider,
): InProcessPasses {
  const settings = resolvePassSettings(
    {
      master: master.host,
      port: master.port,
      user: master.user,
      identity: master.identity,
      knownHosts: master.knownHosts,
      source: `${ws.source}/`,
      target: ws.target,
      stateDir: ws.state,
      flagFile: path.join(ws.state, 'flag'),
      logFile: false,
      connectTimeout: 5,
      timeout: 10,
      ...extra,
    },
    {},
  );
  const provider = shared ?? new WarmSessionProvider(settings.connection, settings.sourceDir);
  const notices: string[] = [];
  const reporter: PassReporter = {
    receivingFileList: () => {},
    items: () => {},
    notice: (m) => void notices.push(m),
    skipped: (r) => void notices.push(`skipped: ${r}`),
    success: () => {},
    failure: (e) => void notices.push(`failure: ${e instanceof Error ? e.message : String(e)}`),
  };
  return {
    settings,
    provider,
    notices,
    run: (hooks?: PassHooks) => {
      notices.length = 0;
      return runPass(settings, provider, reporter, hooks);
    },
    close: async () => {
      if (!shared) await provider.close();
    },
  };
}

// ---------------------------------------------------------------------------
// Embedded master with hooks

export interface HookedMaster extends TestMaster {
  readonly hooks: ServerHooks;
}

/** The embedded ssh2 master serving `root`, with fresh keys and a hooks object the test may change at any time. */
export async function startHookedMaster(root: string): Promise<HookedMaster> {
  const dir = await makeTempDir('xroad-sync-hooked-');
  const host = generateEd25519();
  const client = generateEd25519();
  const identity = path.join(dir, 'id_ed25519');
  const hooks: ServerHooks = {};
  let server: Awaited<ReturnType<typeof startEmbeddedMaster>>;
  try {
    await writeFile(identity, client.private, { mode: 0o600 });
    server = await startEmbeddedMaster({ root, hostKey: host.private, authorizedKeys: [client.public], hooks });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const hostPublicKey = host.public.trim().split(/\s+/).slice(0, 2).join(' ');
  const knownHosts = path.join(dir, 'known_hosts');
  await writeFile(knownHosts, `[127.0.0.1]:${server.port} ${hostPublicKey}\n`);
  let stopping: Promise<void> | undefined;
  return {
    host: '127.0.0.1',
    port: server.port,
    user: 'xroad-slave',
    identity,
    knownHosts,
    hostPublicKey,
    hostKeyFingerprint: '',
    dir,
    kind: 'embedded',
    hooks,
    stop: () =>
      (stopping ??= (async () => {
        await server.close();
        await rm(dir, { recursive: true, force: true });
      })()),
  };
}

/** known_hosts naming `port` (a proxy in front of the master) with the master's host key. */
export async function knownHostsFor(master: TestMaster, port: number, dir: string): Promise<string> {
  const file = path.join(dir, `known_hosts_${port}`);
  await writeFile(file, `[127.0.0.1]:${port} ${master.hostPublicKey}\n`);
  return file;
}

// ---------------------------------------------------------------------------
// Small utilities

/** mulberry32: a seeded PRNG, so a failing soak or kill run can be replayed with its seed. */
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

export function seedFromEnv(name: string): number {
  const given = Number(process.env[name]);
  return Number.isInteger(given) && given > 0 ? given : (Date.now() % 1_000_000_007) >>> 0;
}

/** Peak resident memory (VmHWM) of a live process in bytes, polled until it exits; call stop() to read the peak. */
export function watchPeakRss(pid: number, everyMs = 25): { stop(): number } {
  let peak = 0;
  const read = (): void => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) peak = Math.max(peak, Number(m[1]) * 1024);
    } catch {
      // gone
    }
  };
  read();
  const timer = setInterval(read, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

export { sleep, until } from '../../helpers/wait.js';
