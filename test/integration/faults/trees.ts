/**
 * Master trees for the fault suites: an "old" and a "new" /etc/xroad whose
 * difference exercises every commit step (fetch of changed, same-size and
 * new files, symlink retargets, file ↔ dir ↔ symlink swaps, attribute-only
 * changes, deletions of files and whole directories, new directory chains,
 * keyconf.xml last), and a generated larger pair for random-timing kills.
 * Every entry has an explicit mtime, so "unchanged" really is unchanged.
 */
import { chmod, utimes } from 'node:fs/promises';
import { type TreeSpec, writeTree } from '../../helpers/sshd.js';
import { prng } from './helpers.js';

export const T0 = 1_700_000_000;

const file = (content: string | Buffer, mtime: number, mode = 0o640) => ({ content, mode, mtime: T0 + mtime });
const dir = (mtime: number, mode = 0o750) => ({ mode, mtime: T0 + mtime });
const link = (target: string, mtime: number) => ({ symlink: target, mtime: T0 + mtime });

/** Deterministic bytes (not text), so contents differ without randomness between runs. */
function bytes(seed: number, n: number): Buffer {
  const next = prng(seed);
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256);
  return out;
}

function keyconf(version: number, devices: number): string {
  const device = `  <device><deviceType>softToken</deviceType><key active="true"><keyId>${String(version).repeat(40).slice(0, 40)}</keyId></key></device>\n`;
  return `<?xml version="1.0" encoding="UTF-8"?>\n<keyConf>\n${device.repeat(devices)}</keyConf>\n`;
}

/** Both versions share these entries unchanged. */
function common(): TreeSpec {
  return {
    'conf.d/': dir(100),
    'conf.d/local.ini': file('[proxy]\nhealth-check-port=5588\n', 1),
    'conf.d/node.ini': file('[node]\ntype = master\n', 2), // excluded
    'conf.d/addons/': dir(101),
    'conf.d/addons/metaservices.ini': file('m'.repeat(700), 3),
    'services/': dir(102),
    'signer/': dir(103),
    'signer/softtoken/': dir(104),
    'ssl/': dir(105),
    'ssl/openssl.cnf': file('o'.repeat(983), 4),
    'devices.ini': file('d'.repeat(4181), 5),
    'db.properties': file('serverconf.hibernate.connection.password=secret\n', 6), // excluded
    'bulk/': dir(106),
  };
}

export function oldTree(): TreeSpec {
  const spec: TreeSpec = {
    ...common(),
    'conf.d/proxy.ini': file('; proxy\n'.repeat(75), 10),
    'conf.d/signer.ini': file('s'.repeat(828), 11),
    'conf.d/addons/message-log.ini': file('l'.repeat(2486), 12),
    'services/global.conf': file('g'.repeat(2121), 13, 0o640),
    'services/local.properties': file('a=1\n', 14),
    'signer/keyconf.xml': file(keyconf(1, 20), 15),
    'signer/softtoken/.softtoken.p12': file(bytes(1, 2514), 16),
    'signer/softtoken/old.p12': file(bytes(2, 2653), 17),
    'ssl/internal.crt': file('-----BEGIN CERTIFICATE-----\n' + 'c'.repeat(1200), 18, 0o660),
    'ssl/internal.key': file('-----BEGIN PRIVATE KEY-----\n' + 'k'.repeat(1700), 19, 0o660),
    'ssl/internal.p12': file(bytes(3, 2600), 20, 0o660),
    'old-dir/': dir(107),
    'old-dir/a': file('old a\n', 21),
    'old-dir/b': file('old b\n', 22),
    'old-dir/sub/': dir(108),
    'old-dir/sub/c': file('old c\n', 23),
    'turns-dir': file('a file that becomes a directory\n', 24),
    'turns-file/': dir(109),
    'turns-file/p': file('p\n', 25),
    'turns-file/q': file('q\n', 26),
    'link-retarget': link('nowhere-1', 27),
    'link-to-file': link('nowhere-3', 28),
    'file-to-link': file('becomes a link\n', 29),
    'messagelog/': dir(110, 0o700),
    'messagelog/messagelog.p12': file(bytes(4, 400), 30, 0o600),
  };
  for (let i = 0; i < 24; i++) spec[`bulk/f${String(i).padStart(2, '0')}`] = file(bytes(100 + i, 2048), 40 + i);
  return spec;
}

export function newTree(): TreeSpec {
  const spec: TreeSpec = {
    ...common(),
    'conf.d/proxy.ini': file('; proxy, changed\n'.repeat(60), 210), // other size
    'conf.d/signer.ini': file('S'.repeat(828), 211), // same size
    'services/global.conf': file('g'.repeat(2121), 13, 0o600), // mode only
    'services/local.properties': file('a=1\n', 214), // mtime only
    'signer/keyconf.xml': file(keyconf(2, 24), 215),
    'signer/softtoken/.softtoken.p12': file(bytes(11, 2514), 216),
    'signer/softtoken/new.p12': file(bytes(12, 2653), 217),
    'ssl/internal.crt': file('-----BEGIN CERTIFICATE-----\n' + 'C'.repeat(1250), 218, 0o660),
    'ssl/internal.key': file('-----BEGIN PRIVATE KEY-----\n' + 'K'.repeat(1700), 219, 0o660),
    'ssl/internal.p12': file(bytes(13, 2700), 220, 0o660),
    'turns-dir/': dir(209),
    'turns-dir/x': file('x\n', 224),
    'turns-dir/y': file('y\n', 225),
    'turns-file': file('a directory that became a file\n', 226),
    'link-retarget': link('nowhere-2', 227),
    'link-to-file': file('was a link\n', 228),
    'file-to-link': link('nowhere-4', 229),
    'messagelog/': dir(110, 0o750), // directory mode
    'messagelog/messagelog.p12': file(bytes(4, 400), 30, 0o600),
    'new-dir/': dir(230),
    'new-dir/sub/': dir(231, 0o755),
    'new-dir/sub/n1': file('n1\n', 232),
    'new-dir/sub/n2': file(bytes(14, 5000), 233),
    'new-dir/n3': file('n3\n', 234),
    'signer/tmpconf1.tmp': file('excluded temp\n', 235), // excluded
  };
  for (let i = 0; i < 24; i++) {
    const name = `bulk/f${String(i).padStart(2, '0')}`;
    if (i % 3 === 0)
      spec[name] = file(bytes(300 + i, 1024 + 97 * i), 340 + i); // changed
    else if (i % 3 === 1)
      spec[name] = file(bytes(100 + i, 2048), 40 + i); // same
    else spec[name] = file(bytes(100 + i, 2048), 40 + i, 0o600); // chmod
  }
  for (let i = 0; i < 6; i++) spec[`bulk/g${i}`] = file(bytes(400 + i, 3000), 400 + i);
  return spec;
}

/**
 * A larger pair for random-timing kills: `files` files in a few directories,
 * some large enough that a kill lands mid-fetch; the new one changes about a
 * third of them, deletes some, adds some.
 */
export function largePair(seed: number, files = 200): { old: TreeSpec; new: TreeSpec } {
  const rnd = prng(seed);
  const old: TreeSpec = {};
  const next: TreeSpec = {};
  for (let d = 0; d < 6; d++) {
    old[`d${d}/`] = dir(500 + d);
    next[`d${d}/`] = dir(500 + d);
  }
  for (let i = 0; i < files; i++) {
    const name = `d${i % 6}/file${i}`;
    const size = i % 25 === 0 ? 100_000 + Math.floor(rnd() * 100_000) : 200 + Math.floor(rnd() * 4000);
    const base = file(bytes(1000 + i, size), 600 + i);
    const roll = rnd();
    if (roll < 0.05) {
      old[name] = base; // deleted
    } else if (roll < 0.1) {
      next[name] = base; // added
    } else if (roll < 0.4) {
      old[name] = base;
      next[name] = file(bytes(5000 + i, size + (roll < 0.25 ? 0 : 17)), 5600 + i); // changed
    } else {
      old[name] = base;
      next[name] = base;
    }
  }
  old['signer/'] = dir(700);
  old['signer/keyconf.xml'] = file(keyconf(3, 10), 701);
  next['signer/'] = dir(700);
  next['signer/keyconf.xml'] = file(keyconf(4, 12), 702);
  return { old, new: next };
}

/** writeTree plus the root's own mode and mtime. */
export async function writeSpec(root: string, spec: TreeSpec, rootMtime = T0 + 999, rootMode = 0o755): Promise<void> {
  await writeTree(root, spec);
  await utimes(root, rootMtime, rootMtime);
  await chmod(root, rootMode);
}
