/**
 * The order of a one-shot pass, from its system calls (strace -f -y of a
 * real `sync` against a real sshd): the SSH session is set up while the
 * local work runs, not after it; the target is scanned once (the content
 * check's scan is the one the pass plans against); and a pass refused at the
 * target lock never connects to the master. Not timed: calls are ordered and
 * counted, not clocked.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { passArgs, runCli, waitFor } from '../helpers/cli.js';
import { skipUnlessCI } from '../helpers/components.js';
import { makeTempDir, startMaster, type TestMaster, writeTree } from '../helpers/sshd.js';
import { type Call, parseTrace, quoted } from '../helpers/strace.js';

const straceAvailable = spawnSync('strace', ['-V']).status === 0;
const T = { timeout: 90_000, skip: skipUnlessCI(!straceAvailable && 'strace is not installed (apt-get install strace)') };
const T0 = 1_700_000_000;

describe('a one-shot pass, from its system calls', () => {
  let master: TestMaster;
  let work: string;
  let paths: { source: string; target: string; stateDir: string; logFile: string; flagFile: string };

  before(async () => {
    master = await startMaster();
    work = await makeTempDir('xroad-sync-oneshot-order-');
    paths = {
      source: path.join(work, 'master'),
      target: path.join(work, 'target'),
      stateDir: path.join(work, 'state'),
      logFile: path.join(work, 'slave-sync.log'),
      flagFile: path.join(work, 'sync-disabled'),
    };
    const file = (content: string, dt: number) => ({ content, mode: 0o640, mtime: T0 + dt });
    await writeTree(paths.source, {
      'conf.d/local.ini': file('[proxy]\n', 1),
      'signer/keyconf.xml': file('<keyConf/>\n', 2),
      'ssl/internal.crt': file('crt\n', 3),
    });
    await writeTree(work, { 'target/.keep': file('', 0) });
    const first = await runCli(['sync', ...passArgs(master, paths)]);
    assert.equal(first.status, 0, first.stderr);
  });
  after(async () => {
    await master?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** A `sync` under strace: its exit status and its calls. */
  async function tracedSync(name: string): Promise<{ status: number | null; stderr: string; calls: Call[] }> {
    const traceFile = path.join(work, `${name}.trace`);
    const run = await runCli(['sync', ...passArgs(master, paths)], { under: ['strace', '-f', '-y', '-qq', '-e', 'trace=connect,openat', '-o', traceFile] });
    return { status: run.status, stderr: run.stderr, calls: parseTrace(await readFile(traceFile, 'utf8')) };
  }

  const toMaster = (c: Call): boolean => c.name === 'connect' && c.args.includes(`sin_port=htons(${master.port})`);
  const opens = (calls: Call[], file: string): Call[] => calls.filter((c) => c.name === 'openat' && quoted(c.args).includes(file));

  it('connects to the master before it checks local content, and scans each target directory once', T, async () => {
    assert.ok(existsSync(path.join(paths.stateDir, 'content-hashes.json')), 'the first pass left a content record');
    const { status, stderr, calls } = await tracedSync('no-change');
    assert.equal(status, 0, stderr);
    const connect = calls.findIndex(toMaster);
    const record = opens(calls, path.join(paths.stateDir, 'content-hashes.json'))[0]?.index ?? -1;
    assert.ok(connect >= 0 && record >= 0, `a connect to the master (${connect}) and a read of the content record (${record})`);
    assert.ok(connect < record, `the TCP connect (call ${connect}) goes out before the content check reads its record (call ${record})`);
    for (const dir of ['conf.d', 'signer', 'ssl']) {
      const scans = opens(calls, path.join(paths.target, dir)).filter((c) => c.args.includes('O_DIRECTORY'));
      assert.equal(scans.length, 1, `${dir} is opened once to be scanned (the content check's scan is the pass's), not ${scans.length} times`);
    }
  });

  it('a pass refused at the target lock does not connect to the master', T, async () => {
    // Another process holds the target's flock (as another state dir's daemon would).
    const holder = spawn('flock', ['-x', paths.target, 'sleep', '120'], { stdio: 'ignore' });
    try {
      const held = (): boolean => spawnSync('flock', ['-x', '-n', paths.target, 'true']).status !== 0;
      await waitFor(held, 10_000, 'the target lock to be held');
      const { status, stderr, calls } = await tracedSync('refused');
      assert.equal(status, 75, stderr);
      assert.match(stderr, /holds the target|writes into the target/, stderr);
      assert.equal(calls.filter(toMaster).length, 0, 'no connect to the master');
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
