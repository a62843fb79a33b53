/**
 * OpenSSH known_hosts, read the way ssh(1) reads it (hostfile.c, match.c),
 * because ssh2 has no known_hosts support and accepts every host key unless
 * told otherwise. Only what a client pinning one master needs: plain and
 * hashed host fields, `[host]:port`, `@revoked`. `@cert-authority` lines are
 * kept out of matching: ssh2 never negotiates host certificates.
 */
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { ConfigError } from '../errors.js';

export type HostMarker = 'none' | 'revoked' | 'cert-authority';

type HostField =
  | { readonly kind: 'hashed'; readonly salt: Buffer; readonly hash: Buffer }
  | { readonly kind: 'patterns'; readonly patterns: readonly HostPattern[] };

interface HostPattern {
  readonly negated: boolean;
  readonly regex: RegExp;
}

export interface KnownHostEntry {
  /** 1-based line number in the file, for messages. */
  readonly line: number;
  readonly marker: HostMarker;
  readonly hosts: HostField;
  /** Key type as written on the line, e.g. "ssh-ed25519". */
  readonly keyType: string;
  /** The key blob in SSH wire format (what ssh2 hands to hostVerifier). */
  readonly key: Buffer;
}

export interface KnownHosts {
  /** Where the entries came from, named in error hints. */
  readonly source: string;
  readonly entries: readonly KnownHostEntry[];
}

export type HostKeyVerdict = { ok: true } | { ok: false; reason: 'unknown' | 'changed' | 'revoked' };

/** `ssh-keygen -lf` style: "SHA256:" + unpadded base64 of the blob's SHA-256. */
export function fingerprint(key: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(key).digest('base64').replace(/=+$/, '');
}

/** The name ssh(1) looks up: "host" on port 22, "[host]:port" elsewhere (misc.c put_host_port). */
export function hostLookupName(host: string, port: number): string {
  const lower = host.toLowerCase();
  return port === 22 || port === 0 ? lower : `[${lower}]:${port}`;
}

/** The key type string embedded at the start of an SSH wire-format key blob. */
export function keyTypeOf(key: Buffer): string | undefined {
  if (key.length < 4) return undefined;
  const len = key.readUInt32BE(0);
  if (len === 0 || 4 + len > key.length) return undefined;
  return key.toString('latin1', 4, 4 + len);
}

/**
 * Read synchronously, like the identity file: a few hundred bytes, and the TCP connect waits for both.
 * Through the thread pool each read waited for the event loop (a one-shot pass's content check runs
 * beside the connect), so the connect started only after the check instead of during it.
 */
export function loadKnownHosts(file: string): KnownHosts {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read known_hosts file ${file}`, {
      subject: file,
      cause: err,
      hint: `create it with the master's host key, e.g. ssh-keyscan -p PORT HOST >> ${file}, then verify the fingerprint`,
    });
  }
  return parseKnownHosts(text, file);
}

/** Lines that do not parse are skipped, as ssh(1) does. */
export function parseKnownHosts(text: string, source = 'known_hosts'): KnownHosts {
  const entries: KnownHostEntry[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const entry = parseLine(lines[i], i + 1);
    if (entry) entries.push(entry);
  }
  return { source, entries };
}

function parseLine(raw: string, line: number): KnownHostEntry | undefined {
  const fields = raw.trim().split(/[ \t]+/);
  if (fields[0] === '' || fields[0].startsWith('#')) return undefined;
  let marker: HostMarker = 'none';
  if (fields[0].startsWith('@')) {
    if (fields[0] === '@revoked') marker = 'revoked';
    else if (fields[0] === '@cert-authority') marker = 'cert-authority';
    else return undefined;
    fields.shift();
  }
  if (fields.length < 3) return undefined;
  const [hostText, keyType, keyBase64] = fields;
  const hosts = parseHostField(hostText);
  const key = Buffer.from(keyBase64, 'base64');
  // A blob whose embedded type disagrees with the line (or old RSA1 "bits e n" lines) is not a key we can match.
  if (!hosts || keyTypeOf(key) !== keyType) return undefined;
  return { line, marker, hosts, keyType, key };
}

function parseHostField(text: string): HostField | undefined {
  if (text.startsWith('|1|')) {
    const parts = text.split('|');
    if (parts.length !== 4) return undefined;
    const salt = Buffer.from(parts[2], 'base64');
    const hash = Buffer.from(parts[3], 'base64');
    // SHA-1 sized salt and digest (hostfile.c extract_salt); anything else is corrupt.
    if (salt.length !== 20 || hash.length !== 20) return undefined;
    return { kind: 'hashed', salt, hash };
  }
  const patterns = text
    .split(',')
    .filter((p) => p !== '' && p !== '!')
    .map((p) => (p.startsWith('!') ? { negated: true, regex: globToRegex(p.slice(1)) } : { negated: false, regex: globToRegex(p) }));
  return patterns.length > 0 ? { kind: 'patterns', patterns } : undefined;
}

/** match.c match_pattern: `*` any run, `?` any one character, case-insensitive for host names. */
function globToRegex(glob: string): RegExp {
  const body = glob
    .toLowerCase()
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
  return new RegExp(`^${body}$`, 's');
}

/** match_hostname semantics: a matching negated pattern vetoes the line even if a positive one matched. */
function hostFieldMatches(field: HostField, name: string): boolean {
  if (field.kind === 'hashed') {
    return createHmac('sha1', field.salt).update(name).digest().equals(field.hash);
  }
  let positive = false;
  for (const pattern of field.patterns) {
    if (!pattern.regex.test(name)) continue;
    if (pattern.negated) return false;
    positive = true;
  }
  return positive;
}

function entriesFor(knownHosts: KnownHosts, host: string, port: number): KnownHostEntry[] {
  const name = hostLookupName(host, port);
  return knownHosts.entries.filter((e) => e.marker !== 'cert-authority' && hostFieldMatches(e.hosts, name));
}

/**
 * ssh(1)'s decision for one offered key: revoked beats everything; a listed
 * key is accepted; a different key of the same type is "changed" (the case
 * ssh warns about loudly); otherwise the key is "unknown".
 */
export function verifyHostKey(knownHosts: KnownHosts, host: string, port: number, offeredKey: Buffer): HostKeyVerdict {
  // Stricter than ssh(1), which honours @revoked only on lines matching the host: a revoked key is never trusted.
  if (knownHosts.entries.some((e) => e.marker === 'revoked' && e.key.equals(offeredKey))) return { ok: false, reason: 'revoked' };
  const trusted = entriesFor(knownHosts, host, port).filter((e) => e.marker === 'none');
  if (trusted.some((e) => e.key.equals(offeredKey))) return { ok: true };
  const offeredType = keyTypeOf(offeredKey);
  if (trusted.some((e) => e.keyType === offeredType)) return { ok: false, reason: 'changed' };
  return { ok: false, reason: 'unknown' };
}

/**
 * Key types known (and not revoked) for this host, in file order. The session
 * offers these host key algorithms first, as ssh(1) does, so a master with an
 * ed25519 and an ecdsa key is not "unknown" just because only ecdsa is listed.
 */
export function knownKeyTypes(knownHosts: KnownHosts, host: string, port: number): string[] {
  const types = entriesFor(knownHosts, host, port)
    .filter((e) => e.marker === 'none')
    .map((e) => e.keyType);
  return [...new Set(types)];
}
