/**
 * What a pass does after a commit, against a real OpenSSH master: the
 * restart hints (IG-XLB: only keyconf is applied live) and the --on-change
 * hook with the changed paths on stdin.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseRecords } from '../../src/report/logger.js';
import { parseRestartRules, restartHintLines, restartsNeeded } from '../../src/report/restart-hints.js';
import { describeRun, runSync } from '../helpers/run-sync.js';
import { makeTempDir, suiteMaster, type TestMaster, writeTree } from '../helpers/sshd.js';

describe('restart hints', () => {
  it('maps each X-Road path to the services that read it (globs, dotfiles included)', async () => {
    const table: Record<string, string[]> = {
      'signer/keyconf.xml': [],
      'signer/softtoken/.softtoken.p12': [],
      'signer/softtoken/deep/x.p12': [],
      'backup.d/10_xroad-signer': [],
      'conf.d/common.ini': ['xroad-proxy', 'xroad-signer', 'xroad-confclient', 'xroad-proxy-ui-api'],
      'services/local.properties': ['xroad-proxy', 'xroad-signer', 'xroad-confclient', 'xroad-proxy-ui-api'],
      'conf.d/addons/message-log.ini': ['xroad-proxy'],
      'ssl/internal.crt': ['xroad-proxy'],
      'conf.d/signer-console-logback.xml': ['xroad-signer'],
      'devices.ini': ['xroad-signer'],
      'configuration-anchor.xml': ['xroad-confclient'],
      'conf.d/proxy-ui-api-logback.xml': ['xroad-proxy-ui-api'],
      'conf.d/op-monitor.ini': ['xroad-opmonitor'],
      'conf.d/addons/monitor-logback.xml': ['xroad-monitor'],
      'jetty/clientproxy.xml': ['xroad-jetty'],
      'conf.d/addons/other.ini': ['xroad-proxy', 'xroad-signer', 'xroad-confclient', 'xroad-proxy-ui-api'],
      'ssl/unknown.pem': ['unknown'],
      'conf.d': ['unknown'],
      'signer/softtoken': ['unknown'],
      'signer/keyconf.xml.bak': ['unknown'],
    };
    for (const [path, services] of Object.entries(table)) {
      assert.deepEqual([...(await restartsNeeded([path])).keys()], services, path);
    }
  });

  it('takes operator rules before the built-in ones, and names a malformed rule', async () => {
    const rules = parseRestartRules(' conf.d/custom/*.ini, ssl/extra.* = xroad-proxy xroad-signer ; conf.d/local.ini= ;');
    assert.deepEqual(rules, [
      { globs: ['conf.d/custom/*.ini', 'ssl/extra.*'], services: ['xroad-proxy', 'xroad-signer'] },
      { globs: ['conf.d/local.ini'], services: [] },
    ]);
    assert.deepEqual(await restartHintLines(['conf.d/custom/a.ini', 'conf.d/local.ini'], rules), [
      'restart xroad-proxy, xroad-signer to apply conf.d/custom/a.ini',
    ]);
    assert.throws(() => parseRestartRules('conf.d/*.ini'), /restart rule "conf.d\/\*.ini" is not GLOB=SERVICE/);
    assert.throws(() => parseRestartRules('a=xroad-proxy;rm -rf'), /"rm -rf" is not GLOB=SERVICE/);
    assert.throws(() => parseRestartRules('a=$(reboot)'), /"\$\(reboot\)" is not a unit name/);
  });

  it('names no restart for keyconf and its keys, every service for local.ini, the proxy for its own files', async () => {
    assert.deepEqual(await restartHintLines(['signer/keyconf.xml', 'signer/softtoken/0a1b.p12']), []);
    assert.deepEqual(await restartHintLines(['conf.d/local.ini']), [
      'restart xroad-proxy, xroad-signer, xroad-confclient, xroad-proxy-ui-api to apply conf.d/local.ini',
    ]);
    assert.deepEqual(await restartHintLines(['conf.d/proxy.ini', 'ssl/internal.key']), ['restart xroad-proxy to apply conf.d/proxy.ini, ssl/internal.key']);
  });
  it('names five paths of a long list and counts the rest', async () => {
    const paths = Array.from({ length: 8 }, (_, i) => `conf.d/x${i}.ini`);
    assert.match((await restartHintLines(paths))[0]!, /to apply conf\.d\/x0\.ini, .*conf\.d\/x4\.ini and 3 more$/);
  });
});

describe('after a commit (real sshd)', () => {
  let master!: TestMaster;
  const scratch = suiteMaster((m) => (master = m));

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
    const hints = parseRecords(first.stdout)
      .map((r) => String(r.msg))
      .filter((m) => m.startsWith('restart '));
    assert.deepEqual(hints, ['restart xroad-proxy, xroad-signer, xroad-confclient, xroad-proxy-ui-api to apply conf.d/local.ini']);
    const changed = (await readFile(hookOut, 'utf8')).split('\0');
    assert.ok(changed.includes('conf.d/local.ini') && changed.includes('signer/keyconf.xml'), changed.join(' '));

    await writeFile(hookOut, 'untouched');
    const second = await runSync({ master, source, target, stateDir, args });
    assert.equal(second.status, 0, describeRun(second));
    assert.equal(await readFile(hookOut, 'utf8'), 'untouched', 'the hook ran on a pass that changed nothing');
  });

  it('takes restart rules from XROAD_SYNC_RESTART_RULES in the settings file; a malformed rule stops the pass before it changes anything', {
    timeout: 60_000,
  }, async () => {
    const base = await makeTempDir('xs-restart-rules-');
    scratch.push(base);
    const [source, target, stateDir] = ['src', 'dst', 'state'].map((d) => path.join(base, d)) as [string, string, string];
    await writeTree(source, { 'conf.d/local.ini': '[proxy]\n', 'conf.d/custom/extra.ini': 'x=1\n' });
    await Promise.all([target, stateDir].map((d) => mkdir(d, { recursive: true })));
    const settings = path.join(base, 'xroad-sync.default');

    await writeFile(settings, 'XROAD_SYNC_RESTART_RULES="conf.d/custom/*.ini=xroad-custom; conf.d/local.ini="\n');
    const run = await runSync({ master, source, target, stateDir, env: { XROAD_SYNC_SETTINGS: settings } });
    assert.equal(run.status, 0, describeRun(run));
    const hints = parseRecords(run.stdout)
      .map((r) => String(r.msg))
      .filter((m) => m.startsWith('restart '));
    assert.deepEqual(hints, ['restart xroad-custom to apply conf.d/custom/extra.ini'], 'the operator rules win over the built-in ones');

    await writeFile(path.join(source, 'conf.d/local.ini'), '[proxy]\nchanged=1\n');
    await writeFile(settings, 'XROAD_SYNC_RESTART_RULES="conf.d/*.ini"\n');
    const bad = await runSync({ master, source, target, stateDir, env: { XROAD_SYNC_SETTINGS: settings } });
    assert.equal(bad.status, 1, describeRun(bad));
    assert.match(bad.stderr, /XROAD_SYNC_RESTART_RULES: restart rule "conf\.d\/\*\.ini" is not GLOB=SERVICE/, describeRun(bad));
    assert.equal(await readFile(path.join(target, 'conf.d/local.ini'), 'utf8'), '[proxy]\n', 'nothing changed');
  });
});
