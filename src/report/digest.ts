/**
 * One digest of a tree's synced state, to compare nodes: a slave records the
 * digest of the master listing its last ok pass mirrored; `xroad-sync digest
 * DIR` computes the same over a local tree (the master's /etc/xroad) with the
 * same excludes. Over every entry after excludes, sorted bytewise by path:
 * path, type, permission bits, size (files only), mtime (whole seconds, as
 * SFTP carries it), link target, owner and group names (the numeric id where
 * a side has no name; none for the root). SHA-256, the first 16 hex digits: enough to tell
 * states apart, short enough to read off a dashboard.
 */
import { createHash } from 'node:crypto';
import { compileFilter } from '../filter/rsync-filter.js';
import { DEFAULT_EXCLUDES } from '../filter/types.js';
import { scanTarget } from '../local/scan.js';
import type { Entry, Tree } from '../tree.js';

const DIGEST_HEX_DIGITS = 16;

function fieldsOf(e: Entry): string[] {
  // The root's owner is not named: SFTP stats the root without the listing's longname.
  const owner = e.path === '' ? '' : (e.owner ?? String(e.uid));
  const group = e.path === '' ? '' : (e.group ?? String(e.gid));
  return [
    e.path === '' ? '.' : e.path,
    e.type,
    e.mode.toString(8),
    e.type === 'file' ? String(e.size) : '0',
    String(e.mtime),
    e.linkTarget ?? '',
    owner,
    group,
  ];
}

/** A daemon gets the same tree object back while the master is unchanged: its digest is computed once. */
const digestByTree = new WeakMap<Tree, string>();

export function treeDigest(tree: Tree): string {
  let digest = digestByTree.get(tree);
  if (digest === undefined) digestByTree.set(tree, (digest = computeDigest(tree)));
  return digest;
}

function computeDigest(tree: Tree): string {
  const keyed = [...tree.values()].map((e) => ({ key: Buffer.from(e.path), e }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  const hash = createHash('sha256');
  // NUL cannot occur in a path or a name: fields and entries stay apart whatever they hold.
  for (const { e } of keyed) hash.update(fieldsOf(e).join('\0') + '\0\0');
  return hash.digest('hex').slice(0, DIGEST_HEX_DIGITS);
}

/** The digest of a local tree with the pass's excludes (defaults first unless left out). */
export async function digestOfDirectory(dir: string, opts: { excludes?: readonly string[]; defaultExcludes?: boolean }): Promise<string> {
  const excludes = [...(opts.defaultExcludes === false ? [] : DEFAULT_EXCLUDES), ...(opts.excludes ?? [])];
  const scan = await scanTarget(dir, compileFilter(excludes));
  return treeDigest(scan.tree);
}
