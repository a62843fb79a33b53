/**
 * What a pass does after a commit, against a real OpenSSH master: the
 * restart hints (IG-XLB: only keyconf is applied live) and the --on-change
 * hook with the changed paths on stdin.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseRecords } from '../src/report/logger.js';
import { restartHintLines } from '../src/report/restart-hints.js';
import { describeRun, runSync } from './helpers/run-sync.js';
import { makeTempDir, startMaster, writeTree, type TestMaster } from './helpers/sshd.js';

describe('restart hints', () => {
  it('names no restart for keyconf and its keys, every service for local.ini, the proxy for its own files', () => {
    assert.deepEqual(restartHintLines(['signer/keyconf.xml', 'signer/softtoken/0a1b.p12']), []);
    assert.deepEqual(restartHintLines(['conf.d/local.ini']), [
      'restart xroad-proxy, xroad-signer, xroad-confclient, xroad-proxy-ui-api to apply conf.d/local.ini',
    ]);
    assert.deepEqual(restartHintLines(['conf.d/proxy.ini', 'ssl/internal.key']), ['restart xroad-proxy to apply conf.d/proxy.ini, ssl/internal.key']);
  });
  it('names five paths of a long list and counts the rest', () => {
    const paths = Array.from({ length: 8 }, (_, i) => `conf.d/x${i}.ini`);
    assert.match(restartHintLines(paths)[0]!, /to apply conf\.d\/x0\.ini, .*conf\.d\/x4\.ini and 3 more$/);
  });
});

describe('after a commit (real sshd)', () => {
  let master: TestMaster;
  const scratch: string[] = [];
  before(async () => {
    master = await startMaster();
  });
  after(async () => {
    await master?.stop();
    await Promise.all(scratch.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('logs the restart hint and runs --on-change with the changed paths; a no-change pass runs nothing', { timeout: 60_000 }, async () => {
    const base = await makeTempDir('xs-after-commit-');
    scratch.push(base);
    const [source, target, stateDir] = ['src', 'dst', 'state'].map((d) => path.join(base, d)) as [string, string, string];
    await writeTree(source, { 'conf.d/local.ini': '[proxy]\n', 'signer/keyconf.xml': '<conf/>' });
    await Promise.all([target, stateDir].map((d) => mkdir(d, { recursive: true })));
    const hookOut = path.join(base, 'hook.out');
    const args = ['--on-change', `cat > ${hookOut}`];

    const first = await runSync({ master, source, target, stateDir, args });
    assert.equal(first.status, 0, describeRun(first));
    const hints = parseRecords(first.stdout).map((r) => String(r.msg)).filter((m) => m.startsWith('restart '));
    assert.deepEqual(hints, ['restart xroad-proxy, xroad-signer, xroad-confclient, xroad-proxy-ui-api to apply conf.d/local.ini']);
    const changed = (await readFile(hookOut, 'utf8')).trim().split('\n');
    assert.ok(changed.includes('conf.d/local.ini') && changed.includes('signer/keyconf.xml'), changed.join(' '));

    await writeFile(hookOut, 'untouched');
    const second = await runSync({ master, source, target, stateDir, args });
    assert.equal(second.status, 0, describeRun(second));
    assert.equal(await readFile(hookOut, 'utf8'), 'untouched', 'the hook ran on a pass that changed nothing');
  });
});
