/** Which services a changed path needs restarted: the built-in rules, operator rules first, first match wins. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRestartRules, restartsNeeded } from '../../src/report/restart-hints.js';

const ALL = ['xroad-proxy', 'xroad-signer', 'xroad-confclient', 'xroad-proxy-ui-api'];

async function servicesFor(path: string, rules = ''): Promise<string[]> {
  const needed = await restartsNeeded([path], parseRestartRules(rules));
  return [...needed.keys()].sort();
}

describe('restartsNeeded', () => {
  it('maps each kind of path to its services', async () => {
    const cases: Array<[string, string[]]> = [
      ['signer/keyconf.xml', []],
      ['signer/softtoken/a/b.p12', []],
      ['signer/x.p12', []],
      ['conf.d/local.ini', ALL],
      ['conf.d/common.ini', ALL],
      ['conf.d/proxy.ini', ['xroad-proxy']],
      ['conf.d/addons/message-log.ini', ['xroad-proxy']],
      ['ssl/internal.crt', ['xroad-proxy']],
      ['conf.d/signer-console-logback.xml', ['xroad-signer']],
      ['devices.ini', ['xroad-signer']],
      ['configuration-anchor.xml', ['xroad-confclient']],
      ['conf.d/proxy-ui-api-logback.xml', ['xroad-proxy-ui-api']],
      ['conf.d/op-monitor.ini', ['xroad-opmonitor']],
      ['conf.d/addons/monitor.ini', ['xroad-monitor']],
      ['jetty/contexts/x.xml', ['xroad-jetty']],
      ['conf.d/custom/extra.ini', ALL],
      ['conf.d/.hidden.ini', ALL],
      ['backup.d/a/b', []],
      ['some/unknown.file', ['unknown']],
      ['conf.d.ini', ['unknown']],
    ];
    for (const [path, services] of cases) assert.deepEqual(await servicesFor(path), [...services].sort(), path);
  });

  it('an operator rule is tried first', async () => {
    assert.deepEqual(await servicesFor('conf.d/custom/extra.ini', 'conf.d/custom/*.ini=xroad-proxy'), ['xroad-proxy']);
    assert.deepEqual(await servicesFor('conf.d/local.ini', 'conf.d/custom/*.ini=xroad-proxy'), [...ALL].sort());
    assert.deepEqual(await servicesFor('ssl/extra.pem', 'ssl/extra.*='), []);
    assert.deepEqual(await servicesFor('conf.d/x(1).ini', 'conf.d/x(1).ini=xroad-signer'), ['xroad-signer'], 'a literal name with glob characters');
  });
});
