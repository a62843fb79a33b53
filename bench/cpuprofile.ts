/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and says where the time went:
 * self time per bucket (a node_modules package, one of our src/ modules,
 * node's own internals, GC, idle) and the heaviest functions.
 */
import fs from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly buckets: Array<{ bucket: string; ms: number }>;
  readonly functions: Array<{ fn: string; ms: number }>;
}

/** Which bucket a frame's url belongs to. */
export function bucketOf(url: string, functionName: string): string {
  if (!url) {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(idle)') return 'idle (waiting on I/O)';
    if (functionName === '(program)') return 'V8/native (program)';
    return `native ${functionName || '(anonymous)'}`;
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `npm ${nm[1]}`;
  const own = /\/dist\/(src|bench|bundle)\/(.*?)\.m?js$/.exec(url);
  if (own) return `ours ${own[1]}/${own[2]}`;
  if (url.startsWith('node:')) {
    const m = /^node:internal\/(modules|process|bootstrap|streams|fs|crypto|net|child_process)/.exec(url);
    return `node ${m ? m[1] : url.replace(/^node:(internal\/)?/, '').split('/')[0]}`;
  }
  return url;
}

/** Attributes each sample to a bucket through the first non-node frame up the stack (so module loading counts as loading). */
export async function summarizeProfile(file: string, top = 15, skipMs = 0): Promise<ProfileSummary> {
  const profile = JSON.parse(await fs.readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfMs = new Map<number, number>();
  for (const [id, ms] of samplesAfter(profile, skipMs)) selfMs.set(id, (selfMs.get(id) ?? 0) + ms);
  const buckets = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, ms] of selfMs) {
    const node = byId.get(id)!;
    const f = node.callFrame;
    const bucket = bucketOf(f.url, f.functionName);
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + ms);
    const name = `${f.functionName || '(anonymous)'} ${f.url ? f.url.replace(/^.*\/(node_modules|dist)\//, '$1/') : ''}:${f.lineNumber + 1}`;
    fns.set(name, (fns.get(name) ?? 0) + ms);
  }
  const sorted = <K>(m: Map<K, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return {
    totalMs: (profile.endTime - profile.startTime) / 1000 - skipMs,
    buckets: sorted(buckets).map(([bucket, ms]) => ({ bucket, ms })),
    functions: sorted(fns)
      .slice(0, top)
      .map(([fn, ms]) => ({ fn, ms })),
  };
}

/** Samples under a module's top-level code (its evaluation, plus the requires it makes), by the innermost such module's package. */
export async function loadTimeByPackage(file: string): Promise<Array<{ pkg: string; ms: number }>> {
  const profile = JSON.parse(await fs.readFile(file, 'utf8')) as CpuProfile;
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const out = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    // Walk up to the innermost module top level ("" function name at line 0): that module is being loaded.
    let id: number | undefined = profile.samples[i];
    let owner: string | undefined;
    while (id !== undefined && owner === undefined) {
      const f = byId.get(id)!.callFrame;
      if (f.url && !f.url.startsWith('node:') && f.functionName === '' && f.lineNumber === 0) owner = bucketOf(f.url, '');
      id = parent.get(id);
    }
    if (owner) out.set(owner, (out.get(owner) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  }
  return [...out].sort((a, b) => b[1] - a[1]).map(([pkg, ms]) => ({ pkg, ms }));
}

/** [node id, ms] of each sample taken `skipMs` or later after the profile started (start-up and first pass left out). */
function samplesAfter(profile: CpuProfile, skipMs: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    at += ms;
    if (at >= skipMs) out.push([profile.samples[i]!, ms]);
  }
  return out;
}

/**
 * Samples (idle excluded) by the innermost of our own src/ frames on the stack, with its function: which of
 * our code causes the time, including what it spends in npm packages and node below it.
 */
export async function timeByOwnCaller(file: string, skipMs = 0, top = 25): Promise<Array<{ caller: string; ms: number }>> {
  const profile = JSON.parse(await fs.readFile(file, 'utf8')) as CpuProfile;
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const out = new Map<string, number>();
  for (const [leaf, ms] of samplesAfter(profile, skipMs)) {
    const leafFrame = byId.get(leaf)!.callFrame;
    if (leafFrame.functionName === '(idle)') continue;
    let id: number | undefined = leaf;
    // Native leaves (a write, an lstat) belong to whoever called them; GC and V8's own work to nobody.
    let owner = ['(garbage collector)', '(program)'].includes(leafFrame.functionName) ? bucketOf('', leafFrame.functionName) : undefined;
    while (id !== undefined && owner === undefined) {
      const f = byId.get(id)!.callFrame;
      const own = /\/dist\/src\/(.*?)\.m?js$/.exec(f.url);
      if (own) owner = `${own[1]} ${f.functionName || '(anonymous)'}:${f.lineNumber + 1}`;
      id = parent.get(id);
    }
    // Not under our code: an I/O callback (ssh2 parsing a packet, a socket read) or a timer; named by its leaf's bucket.
    const key = owner ?? `outside our code: ${bucketOf(leafFrame.url, leafFrame.functionName)}`;
    out.set(key, (out.get(key) ?? 0) + ms);
  }
  return [...out]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([caller, ms]) => ({ caller, ms }));
}
