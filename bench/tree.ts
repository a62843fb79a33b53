/**
 * Source trees for the benchmark, generated deterministically (same bytes on
 * every machine): a realistic 7.x security server /etc/xroad with the sizes
 * of /work/shared/rsync-reference/README.md §2.2, and a large one (the
 * realistic tree plus 5,000 small files in 100 directories and three 8 MiB
 * files). Plus the master-side edits the change scenarios make.
 */
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/** 2024-01-01T00:00:00Z: every generated entry gets this mtime; edits move forward from it. */
export const BASE_MTIME = 1_704_067_200;

export type BenchEntry =
  | { kind: 'file'; path: string; data: Buffer; mode: number }
  | { kind: 'dir'; path: string; mode: number }
  | { kind: 'symlink'; path: string; target: string };

export interface BenchTree {
  readonly name: 'realistic' | 'large';
  readonly entries: readonly BenchEntry[];
  /** Files a one-file change edits (first) and the 100-file change edits; all synced (not excluded). */
  readonly editable: readonly string[];
  readonly files: number;
  readonly bytes: number;
}

/** Deterministic incompressible bytes (AES-128-CTR keystream of a seed): fast enough for 8 MiB. */
export function pseudoRandom(seed: string, size: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]).subarray(0, size);
}

function hex(seed: string, len: number): string {
  return createHash('sha256')
    .update(seed)
    .digest('hex')
    .repeat(Math.ceil(len / 64))
    .slice(0, len);
}

/** Config-looking text of exactly `size` bytes: `[section]` headers and `key = value` lines. */
export function iniText(seed: string, size: number): Buffer {
  if (size === 0) return Buffer.alloc(0);
  const lines: string[] = [`# ${seed}`, '[main]'];
  let length = lines[0]!.length + 8;
  for (let n = 0; length < size; n++) {
    if (n % 12 === 11) lines.push('', `[section-${n}]`);
    lines.push(`${['timeout', 'pool-size', 'enabled', 'url', 'path', 'interval'][n % 6]}-${n} = ${hex(`${seed}/${n}`, 8 + (n % 5) * 6)}`);
    length += lines[lines.length - 1]!.length + (n % 12 === 11 ? 16 : 1);
  }
  return fit(lines.join('\n'), size);
}

/** XML text of exactly `size` bytes (logback configs, keyconf, anchors). */
export function xmlText(seed: string, size: number, root = 'configuration'): Buffer {
  const parts = [`<?xml version="1.0" encoding="UTF-8"?>\n<${root}>`];
  let length = parts[0]!.length;
  for (let n = 0; length < size; n++) {
    parts.push(`  <item id="${n}" ref="${hex(`${seed}/${n}`, 40)}">\n    <value>${hex(`${seed}/v${n}`, 24)}</value>\n  </item>`);
    length += parts[parts.length - 1]!.length + 1;
  }
  parts.push(`</${root}>`);
  return fit(parts.join('\n'), size);
}

/** PEM-looking text (certificates, keys) of exactly `size` bytes. */
function pemText(seed: string, size: number, label: string): Buffer {
  const body = pseudoRandom(seed, size)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return fit(`-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`, size);
}

function fit(text: string, size: number): Buffer {
  const buf = Buffer.from(text.length >= size ? text.slice(0, size - 1) + '\n' : text.padEnd(size - 1, '#') + '\n');
  return buf.subarray(0, size);
}

class Builder {
  readonly entries: BenchEntry[] = [];
  private readonly dirs = new Set<string>();
  dir(p: string, mode = 0o750): void {
    if (this.dirs.has(p)) return;
    const parent = path.posix.dirname(p);
    if (parent !== '.') this.dir(parent);
    this.dirs.add(p);
    this.entries.push({ kind: 'dir', path: p, mode });
  }
  file(p: string, data: Buffer, mode = 0o640): void {
    const parent = path.posix.dirname(p);
    if (parent !== '.') this.dir(parent);
    this.entries.push({ kind: 'file', path: p, data, mode });
  }
  link(p: string, target: string): void {
    this.entries.push({ kind: 'symlink', path: p, target });
  }
}

const CONF_D: Array<[string, number]> = [
  ['common.ini', 121],
  ['proxy.ini', 5143],
  ['proxy-logback.xml', 2381],
  ['signer.ini', 828],
  ['signer-logback.xml', 1712],
  ['signer-console-logback.xml', 1616],
  ['confclient-logback.xml', 1238],
  ['confclient-logback-service.xml', 998],
  ['proxy-ui-api.ini', 363],
  ['proxy-ui-api-logback.xml', 1794],
  ['proxy-ui-api-logback-access.xml', 884],
  ['acme.example.yml', 1818],
  ['mail.example.yml', 812],
  ['op-monitor.ini', 947],
  ['op-monitor-logback.xml', 937],
  ['override-securityserver-ee.ini', 446],
  ['local.ini', 1230],
];
const ADDONS: Array<[string, number]> = [
  ['message-log.ini', 2486],
  ['messagelog-archiver-logback.xml', 902],
  ['monitor.ini', 56],
  ['monitor-logback.xml', 881],
  // Padding: further add-on configs a production server carries (sizes in the same range).
  ['metaservices.ini', 310],
  ['wsdlvalidator.ini', 240],
  ['hwtoken.ini', 420],
  ['opmonitoring.ini', 512],
  ['proxymonitor.ini', 198],
  ['proxymonitor-logback.xml', 874],
  ['opmonitor-logback-service.xml', 962],
  ['messagelog-logback.xml', 905],
];
const SERVICES: Array<[string, number]> = [
  ['global.conf', 2121],
  ['proxy.conf', 859],
  ['signer.conf', 537],
  ['signer-console.conf', 432],
  ['confclient.conf', 590],
  ['proxy-ui-api.conf', 464],
  ['monitor.conf', 609],
  ['opmonitor.conf', 486],
  ['messagelog-archiver.conf', 512],
  ['local.properties', 0],
];

/** How many soft-token keys: 40 members × (auth + sign), a busy provider's server. */
const SOFTTOKEN_KEYS = 80;

export function realisticEntries(): { builder: Builder; editable: string[] } {
  const b = new Builder();
  for (const [name, size] of CONF_D) b.file(`conf.d/${name}`, name.endsWith('.xml') ? xmlText(name, size) : iniText(name, size));
  b.file('conf.d/node.ini', Buffer.from('[node]\ntype = slave\n'));
  b.dir('conf.d/addons');
  for (const [name, size] of ADDONS) b.file(`conf.d/addons/${name}`, name.endsWith('.xml') ? xmlText(name, size) : iniText(name, size));
  b.dir('conf.d/extra'); // an empty directory
  for (const [name, size] of SERVICES) b.file(`services/${name}`, iniText(name, size));
  b.file('ssl/openssl.cnf', iniText('openssl.cnf', 983));
  for (const [stem, crt, key, p12] of [
    ['internal', 1261, 1704, 2541],
    ['proxy-ui-api', 1996, 3272, 4437],
  ] as const) {
    b.file(`ssl/${stem}.crt`, pemText(`${stem}.crt`, crt, 'CERTIFICATE'), 0o660);
    b.file(`ssl/${stem}.key`, pemText(`${stem}.key`, key, 'PRIVATE KEY'), 0o660);
    b.file(`ssl/${stem}.p12`, pseudoRandom(`${stem}.p12`, p12), 0o660);
  }
  b.link('ssl/internal.pem', 'internal.crt'); // a symlink
  b.file('signer/keyconf.xml', xmlText('keyconf', 12_288, 'keyConf'));
  b.file('signer/tmpconf6125840155237426455.tmp', xmlText('keyconf-tmp', 12_288, 'keyConf')); // excluded (*.tmp)
  b.file('signer/softtoken/.softtoken.p12', pseudoRandom('.softtoken.p12', 2514));
  // PIN changed once: SoftwareTokenUtil leaves a dated backup of the whole token.
  b.file('signer/.softtoken.bak-20231114093012/.softtoken.p12', pseudoRandom('bak/.softtoken.p12', 2514));
  for (let i = 0; i < SOFTTOKEN_KEYS; i++) {
    const keyId = hex(`key-${i}`, 40).toUpperCase();
    b.file(`signer/softtoken/${keyId}.p12`, pseudoRandom(`p12-${i}`, 2653));
    b.file(`signer/.softtoken.bak-20231114093012/${keyId}.p12`, pseudoRandom(`bak-p12-${i}`, 2653));
  }
  b.file('devices.ini', iniText('devices.ini', 4181));
  b.file('configuration-anchor.xml', xmlText('anchor', 5300, 'configurationSource'));
  b.file('autologin', Buffer.from('1234-not-a-real-pin\n'), 0o600);
  b.file('db.properties', iniText('db.properties', 255)); // excluded
  b.file('conf.d/addons/db.properties', iniText('db.properties-2', 120)); // excluded deeper too
  b.dir('backup.d');
  for (const name of ['00_xroad-confclient', '10_xroad-signer', '20_xroad-monitor', '30_xroad-proxy', '40_xroad-opmonitor']) {
    b.file(`backup.d/${name}`, Buffer.alloc(0), 0o440);
  }
  for (let i = 0; i < 12; i++)
    b.file(`backupkeys/backup-${2023 + (i >> 2)}-${String(1 + (i % 4) * 3).padStart(2, '0')}.asc`, pemText(`asc-${i}`, 1310, 'PGP PUBLIC KEY BLOCK'));
  b.file('messagelog/messagelog.p12', pseudoRandom('messagelog.p12', 412));
  for (const name of ['clientproxy.xml', 'serverproxy.xml', 'ocsp-responder.xml']) b.file(`jetty/${name}`, xmlText(name, 445, 'Configure')); // excluded
  b.dir('globalconf'); // excluded, as is everything below
  b.file('globalconf/instance-identifier', Buffer.from('EE'));
  for (const inst of ['EE', 'FI', 'IS']) {
    b.file(`globalconf/${inst}/shared-params.xml`, xmlText(`shared-${inst}`, 24_000, 'conf'));
    b.file(`globalconf/${inst}/shared-params.xml.metadata`, Buffer.from(`{"contentIdentifier":"SHARED-PARAMETERS","instance":"${inst}"}\n`));
    b.file(`globalconf/${inst}/private-params.xml`, xmlText(`private-${inst}`, 1100, 'conf'));
    b.file(`globalconf/${inst}/private-params.xml.metadata`, Buffer.from(`{"contentIdentifier":"PRIVATE-PARAMETERS","instance":"${inst}"}\n`));
  }
  b.dir('gpghome', 0o700);
  b.file('gpghome/pubring.kbx', pseudoRandom('pubring', 2400), 0o600);
  b.file('gpghome/trustdb.gpg', pseudoRandom('trustdb', 1200), 0o600);
  b.dir('postgresql', 0o755);
  for (const name of ['ca.crt', 'server.crt', 'server.key']) b.file(`postgresql/${name}`, pemText(name, 1500, 'CERTIFICATE'), 0o400);
  b.dir('x.tmp'); // a directory the *.tmp exclude also hides
  b.file('x.tmp/leftover', Buffer.from('left by an editor\n'));

  const editable = ['signer/keyconf.xml', ...synced(b.entries).filter((p) => p !== 'signer/keyconf.xml')];
  return { builder: b, editable };
}

/** Paths of synced files (the guide's excludes, applied by hand: this tree is ours). */
function synced(entries: readonly BenchEntry[]): string[] {
  const excluded = /^(globalconf|gpghome|postgresql|jetty|x\.tmp)\/|(^|\/)db\.properties$|\.tmp$|^conf\.d\/node\.ini$/;
  return entries.filter((e) => e.kind === 'file' && !excluded.test(e.path) && e.data.length > 0).map((e) => e.path);
}

export function buildTree(name: 'realistic' | 'large'): BenchTree {
  const { builder: b, editable } = realisticEntries();
  let edit = editable;
  if (name === 'large') {
    const small: string[] = [];
    for (let d = 0; d < 100; d++) {
      const dir = `services-extra/member-${String(d).padStart(3, '0')}`;
      b.dir(dir);
      for (let f = 0; f < 50; f++) {
        const p = `${dir}/client-${String(f).padStart(2, '0')}.conf`;
        b.file(p, iniText(p, 200 + (((d * 50 + f) * 37) % 3800)));
        small.push(p);
      }
    }
    const MiB8 = 8 * 1024 * 1024;
    b.file('archive/blob-random.bin', pseudoRandom('blob', MiB8)); // incompressible (keys, archives)
    b.file('archive/shared-params-big.xml', xmlText('big-xml', MiB8, 'conf')); // compressible text
    b.file('archive/mixed.tar', Buffer.concat([xmlText('mixed-text', MiB8 / 2), pseudoRandom('mixed-bin', MiB8 / 2)]));
    // One-file change still edits keyconf.xml; the 100-file change spreads over the small files' directories.
    edit = ['signer/keyconf.xml', ...small.filter((_, i) => i % 50 === 7)];
  }
  const files = b.entries.filter((e) => e.kind === 'file');
  return { name, entries: b.entries, editable: edit, files: files.length, bytes: files.reduce((s, e) => s + (e.kind === 'file' ? e.data.length : 0), 0) };
}

/** Write the tree below `root` (which must exist and be empty); every mtime BASE_MTIME. */
export async function writeBenchTree(root: string, tree: BenchTree): Promise<void> {
  const dirs = tree.entries.filter((e) => e.kind === 'dir');
  for (const d of dirs) await fs.mkdir(path.join(root, d.path), { recursive: true });
  const rest = tree.entries.filter((e) => e.kind !== 'dir');
  const LIMIT = 32;
  for (let i = 0; i < rest.length; i += LIMIT) {
    await Promise.all(
      rest.slice(i, i + LIMIT).map(async (e) => {
        const full = path.join(root, e.path);
        await fs.mkdir(path.dirname(full), { recursive: true });
        if (e.kind === 'symlink') {
          await fs.symlink(e.target, full);
          await fs.lutimes(full, BASE_MTIME, BASE_MTIME);
        } else if (e.kind === 'file') {
          await fs.writeFile(full, e.data);
          await fs.chmod(full, e.mode);
          await fs.utimes(full, BASE_MTIME, BASE_MTIME);
        }
      }),
    );
  }
  // Directories last, deepest first: their mtimes and modes stay as set.
  for (const d of [...dirs].sort((a, b) => b.path.length - a.path.length)) {
    const full = path.join(root, d.path);
    await fs.chmod(full, d.mode);
    await fs.utimes(full, BASE_MTIME, BASE_MTIME);
  }
  await fs.chmod(root, 0o751);
  await fs.utimes(root, BASE_MTIME, BASE_MTIME);
}

/**
 * Edit `count` files on the master the way X-Road saves them (AtomicSave:
 * a tmpconf*.tmp beside the file, then a rename), with new content of a
 * slightly different size and an mtime unique to this round, so every tool's
 * quick check (size + whole-second mtime) sees the change.
 */
export async function editFiles(root: string, tree: BenchTree, count: number, round: number): Promise<string[]> {
  const paths = tree.editable.slice(0, count);
  if (paths.length < count) throw new Error(`${tree.name} tree has only ${paths.length} editable files, ${count} wanted`);
  const mtime = BASE_MTIME + 1000 + round;
  for (const [i, rel] of paths.entries()) {
    const full = path.join(root, rel);
    const old = await fs.stat(full);
    const size = old.size + ((round + i) % 3) - 1 || 1;
    const data = rel.endsWith('.xml') ? xmlText(`${rel}#${round}`, size, 'keyConf') : iniText(`${rel}#${round}`, size);
    const tmp = path.join(path.dirname(full), `tmpconf${round}${i}.tmp`);
    await fs.writeFile(tmp, data, { mode: old.mode & 0o7777 });
    await fs.rename(tmp, full);
    await fs.utimes(full, mtime, mtime);
  }
  return paths;
}
