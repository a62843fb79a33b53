/**
 * A sample master /etc/xroad, shared by the demo, the bench and the tests:
 * the files a security server cluster syncs (conf.d/*.ini, signer/keyconf.xml
 * with the soft-token .p12 files it names, ssl/internal.key), the ones the
 * default excludes keep out (conf.d/node.ini, db.properties, globalconf/),
 * a symlink and an empty directory. The content is deterministic (no
 * randomness, fixed mtimes), so two calls give the same bytes.
 *
 * The spec has the shape of the test harness's TreeSpec (test/helpers/sshd.ts):
 * keys ending in '/' are directories, `{ symlink }` a link, otherwise a file.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

export type SampleTreeValue = { symlink: string; mtime?: number } | { content?: string | Buffer; mode?: number; mtime?: number };
export type SampleTreeSpec = Record<string, SampleTreeValue>;

/** Every entry's mtime (seconds): 2026-01-15 12:00:00 UTC. */
const SAMPLE_MTIME = Date.UTC(2026, 0, 15, 12, 0, 0) / 1000;

/** Soft-token key ids: keyconf.xml names them, signer/softtoken/<id>.p12 holds them. */
const SAMPLE_KEY_IDS = ['3A8F0C2E91D64B7E5F1A0B9C8D7E6F5A4B3C2D1E', 'C47B19E0A25F3D6C8B9A0E1F2D3C4B5A69788796'] as const;

/** Paths of the sample tree that the default excludes keep out of a pass (and everything below them). */
export const SAMPLE_EXCLUDED = ['conf.d/node.ini', 'db.properties', 'globalconf'] as const;

/** The file the demo (and tests that want "one change on the master") edit. */
export const SAMPLE_CHANGED_FILE = 'conf.d/local.ini';

/** `n` deterministic pseudo-random bytes from a seed (SHA-256 in counter mode). */
function sampleBytes(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, off = 0; off < n; i++) {
    const block = createHash('sha256').update(`${seed}:${i}`).digest();
    off += block.copy(out, off);
  }
  return out;
}

function base64Lines(bytes: Buffer, indent: string): string {
  return (bytes.toString('base64').match(/.{1,76}/g) ?? []).map((l) => indent + l).join('\n');
}

/** A keyconf.xml of the shape the X-Road signer writes, about 12 KB: two soft-token keys with a certificate and a CSR each. */
function keyconfXml(): string {
  const keys = SAMPLE_KEY_IDS.map((id, i) => {
    const usage = i === 0 ? 'AUTHENTICATION' : 'SIGNING';
    const cert = base64Lines(sampleBytes(`cert-${id}`, 1_800), '                    ');
    const csr = base64Lines(sampleBytes(`csr-${id}`, 900), '                    ');
    return [
      `        <key usage="${usage}">`,
      `            <keyId>${id}</keyId>`,
      `            <friendlyName>${usage === 'SIGNING' ? 'sign' : 'auth'} key of EE/GOV/1234567-8/ss1</friendlyName>`,
      `            <publicKey>${sampleBytes(`pub-${id}`, 270).toString('base64')}</publicKey>`,
      `            <cert active="true">`,
      `                <memberId>EE/GOV/1234567-8</memberId>`,
      `                <contents>`,
      cert,
      `                </contents>`,
      `            </cert>`,
      `            <certRequest id="${id.slice(0, 8).toLowerCase()}">`,
      `                <memberId>EE/GOV/1234567-8</memberId>`,
      `                <subjectName>C=EE, O=Example, CN=1234567-8</subjectName>`,
      `                <contents>`,
      csr,
      `                </contents>`,
      `            </certRequest>`,
      `        </key>`,
    ].join('\n');
  });
  return [
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
    '<keyConf>',
    '    <device>',
    '        <deviceType>softToken</deviceType>',
    '        <friendlyName>softToken-0</friendlyName>',
    '        <id>0</id>',
    ...keys,
    '    </device>',
    '</keyConf>',
    '',
  ].join('\n');
}

/** The sample tree, fresh on every call (callers may edit their copy). */
export function sampleTree(): SampleTreeSpec {
  const m = SAMPLE_MTIME;
  const file = (content: string | Buffer, mode = 0o644): SampleTreeValue => ({ content, mode, mtime: m });
  const dir = (mode = 0o755): SampleTreeValue => ({ mode, mtime: m });
  const spec: SampleTreeSpec = {
    'conf.d/': dir(),
    'conf.d/addons/': dir(), // stays empty
    [SAMPLE_CHANGED_FILE]: file('[proxy]\nhealth-check-interface=0.0.0.0\nhealth-check-port=5588\n\n[message-log]\narchive-interval=0 0 0/2 1/1 * ? *\n'),
    'conf.d/node.ini': file('[node]\ntype=master\n'),
    'conf.d/override-securityserver-ee.ini': file('[proxy]\nserver-conf-cache-period=60\n\n[signer]\nocsp-cache-path=/var/cache/xroad\n'),
    'conf.d/signer-console.ini': file('[signer-console]\nhelp-on-startup=false\n'),
    'devices.ini': file('; hardware security modules, none on this server\n', 0o640),
    'db.properties': file(
      'serverconf.hibernate.connection.url=jdbc:postgresql://127.0.0.1:5432/serverconf\nserverconf.hibernate.connection.username=serverconf\nserverconf.hibernate.connection.password=not-a-real-password\n',
      0o640,
    ),
    'globalconf/': dir(),
    'globalconf/instance-identifier': file('EE\n'),
    'globalconf/EE/': dir(),
    'globalconf/EE/shared-params.xml': file(
      `<?xml version="1.0" encoding="UTF-8"?>\n<conf:conf xmlns:conf="http://x-road.eu/xsd/xroad.xsd"><instanceIdentifier>EE</instanceIdentifier></conf:conf>\n`,
    ),
    'services/': dir(),
    'services/local.properties': file('XROAD_PROXY_PARAMS=-Xms100m -Xmx512m\n'),
    'signer/': dir(0o750),
    'signer/keyconf.xml': file(keyconfXml(), 0o640),
    'signer/softtoken/': dir(0o750),
    'ssl/': dir(0o750),
    'ssl/internal.crt': file(`-----BEGIN CERTIFICATE-----\n${base64Lines(sampleBytes('internal.crt', 900), '')}\n-----END CERTIFICATE-----\n`),
    'ssl/internal.key': file(`-----BEGIN PRIVATE KEY-----\n${base64Lines(sampleBytes('internal.key', 1_200), '')}\n-----END PRIVATE KEY-----\n`, 0o660),
    // proxy-ui-api serves the same certificate: a relative link, synced as a link.
    'ssl/proxy-ui-api.crt': { symlink: 'internal.crt', mtime: m },
  };
  for (const id of SAMPLE_KEY_IDS) spec[`signer/softtoken/${id}.p12`] = file(sampleBytes(`p12-${id}`, 2_600), 0o640);
  return spec;
}

/**
 * Writes `spec` (default: the sample tree) below `root`, which must exist or
 * be creatable. Parent directories are created as needed; mtimes are set
 * after every entry exists, modes last and deepest first.
 */
export async function writeSampleTree(root: string, spec: SampleTreeSpec = sampleTree()): Promise<void> {
  await fs.mkdir(root, { recursive: true });
  const modes: Array<[string, number]> = [];
  const times: Array<[string, number, boolean]> = [];
  for (const key of Object.keys(spec).sort()) {
    const value = spec[key]!;
    const full = path.join(root, key);
    await fs.mkdir(path.dirname(full), { recursive: true });
    if ('symlink' in value) {
      await fs.symlink(value.symlink, full);
      if (value.mtime !== undefined) times.push([full, value.mtime, true]);
      continue;
    }
    if (key.endsWith('/')) await fs.mkdir(full, { recursive: true });
    else await fs.writeFile(full, value.content ?? '');
    if (value.mode !== undefined) modes.push([full, value.mode]);
    if (value.mtime !== undefined) times.push([full, value.mtime, false]);
  }
  const deepestFirst = (a: [string, ...unknown[]], b: [string, ...unknown[]]): number => b[0].length - a[0].length;
  for (const [p, mtime, isLink] of times.sort(deepestFirst)) {
    if (isLink) await fs.lutimes(p, mtime, mtime);
    else await fs.utimes(p, mtime, mtime);
  }
  for (const [p, mode] of modes.sort(deepestFirst)) await fs.chmod(p, mode);
}
