import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, ExitCode } from '../../src/errors.js';
import { compileFilter } from '../../src/filter/rsync-filter.js';
import { DEFAULT_EXCLUDES } from '../../src/filter/types.js';

/** The nearest directory above this file with a package.json: the same from dist/test/ and test/. */
function repoRoot(): string {
  const self = fileURLToPath(import.meta.url);
  for (let dir = dirname(self); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${self}`);
  }
}

interface Vector {
  pattern: string;
  excluded: string[];
}
interface Reference {
  paths: string[];
  dirs: string[];
  links: string[];
  vectors: Vector[];
  seedDefaults: { patterns: string[]; excluded: string[] };
}
interface Tree {
  paths: readonly string[];
  dirs: ReadonlySet<string>;
}

const ROOT = repoRoot();
const FIXTURE = join(ROOT, 'test/fixtures/exclude-vectors.json');
const SHARED = join(ROOT, '../shared/rsync-reference/exclude-vectors.json');
const ref = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Reference;
const refTree: Tree = { paths: ref.paths, dirs: new Set(ref.dirs) };

/** Every path on which the filter and rsync's list disagree, one readable line each. */
function disagreements(patterns: readonly string[], tree: Tree, excluded: readonly string[]): string[] {
  const filter = compileFilter(patterns);
  const want = new Set(excluded);
  const lines = excluded.filter((p) => !tree.paths.includes(p)).map((p) => `${p}: listed as excluded but not in the tree`);
  for (const path of tree.paths) {
    const isDir = tree.dirs.has(path);
    const got = filter.isExcludedPath(path, isDir);
    if (got !== want.has(path)) {
      lines.push(`${JSON.stringify(patterns)}: ${path}${isDir ? '/' : ''} should be ${want.has(path) ? 'excluded' : 'kept'}`);
    }
  }
  return lines;
}

test('the fixture is a verbatim copy of the shared rsync reference', (t) => {
  if (!existsSync(SHARED)) return t.skip(`${SHARED} not present`);
  assert.ok(readFileSync(FIXTURE).equals(readFileSync(SHARED)), `the reference was regenerated: copy ${SHARED} to ${FIXTURE} and rerun`);
});

test('the fixture is well formed', () => {
  const paths = new Set(ref.paths);
  assert.ok(ref.vectors.length > 0);
  for (const p of [...ref.dirs, ...ref.links, ...ref.seedDefaults.excluded]) assert.ok(paths.has(p), p);
  for (const l of ref.links) assert.ok(!refTree.dirs.has(l), `${l} is a symlink, not a directory`);
});

for (const v of ref.vectors) {
  test(`rsync vector ${JSON.stringify(v.pattern)}`, () => {
    assert.deepEqual(disagreements([v.pattern], refTree, v.excluded), []);
  });
}

test('rsync vector: the seven IG-XLB defaults together', () => {
  assert.deepEqual(disagreements(ref.seedDefaults.patterns, refTree, ref.seedDefaults.excluded), []);
});

test('DEFAULT_EXCLUDES are the seed defaults plus /gpghome, and leave out its subtree', () => {
  assert.deepEqual(DEFAULT_EXCLUDES, [...ref.seedDefaults.patterns, '/gpghome']);
  const gpg = ['gpghome', 'gpghome/pubring.kbx', 'gpghome/private-keys-v1.d', 'gpghome/private-keys-v1.d/k.key'];
  const tree: Tree = {
    paths: [...ref.paths, ...gpg, 'signer/gpghome'],
    dirs: new Set([...ref.dirs, 'gpghome', 'gpghome/private-keys-v1.d', 'signer/gpghome']),
  };
  // Anchored: a gpghome deeper down is kept.
  assert.deepEqual(disagreements(DEFAULT_EXCLUDES, tree, [...ref.seedDefaults.excluded, ...gpg]), []);
});

test('isExcluded judges the path alone; isExcludedPath also its ancestors', () => {
  const f = compileFilter(['/postgresql', 'x.tmp/']);
  assert.equal(f.isExcluded('postgresql', true), true);
  assert.equal(f.isExcluded('postgresql/server.key', false), false);
  assert.equal(f.isExcludedPath('postgresql/server.key', false), true);
  assert.equal(f.isExcludedPath('a/b/x.tmp/c/d', false), true);
  assert.equal(f.isExcludedPath('a/b/x.tmp', false), false, 'a file x.tmp is no directory');
  assert.equal(f.isExcludedPath('postgresqlx/y', false), false);
  assert.equal(f.isExcluded('', true), false);
  assert.deepEqual(f.patterns, ['/postgresql', 'x.tmp/']);
});

test('a trailing slash makes a rule match directories only', () => {
  for (const pattern of ['x.tmp/', '*.tmp/', '/x.tmp/', 'a/x.tmp/', '**/x.tmp/']) {
    const f = compileFilter([pattern]);
    const path = pattern.includes('a/') ? 'a/x.tmp' : 'x.tmp';
    assert.equal(f.isExcluded(path, true), true, `${pattern} on directory ${path}`);
    assert.equal(f.isExcluded(path, false), false, `${pattern} on file ${path}`);
  }
  const anyDir = compileFilter(['*/']);
  assert.equal(anyDir.isExcluded('ssl', true), true);
  assert.equal(anyDir.isExcluded('configuration-anchor.xml', false), false);
});

test('bad patterns throw ConfigError naming the pattern, at compile time', () => {
  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    ['- ', /empty/],
    ['a\0b', /NUL/],
    ['+ *.xml', /include/],
    ['!', /clearing/],
  ];
  for (const [pattern, why] of bad) {
    assert.throws(
      () => compileFilter(['*.tmp', pattern]),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, `${JSON.stringify(pattern)} threw ${String(err)}`);
        assert.equal(err.exitCode, ExitCode.USAGE);
        assert.equal(err.subject, pattern);
        assert.ok(err.message.includes(JSON.stringify(pattern)), err.message);
        assert.match(err.message, why);
        return true;
      },
    );
  }
  // rsync reads these as plain names, and so do we.
  assert.doesNotThrow(() => compileFilter(['!bang', '+x', '-', '/', 'weird[1']));
});

// A tree of our own for deep and odd cases. Every expectation below was
// produced by rsync 3.5.0 (`rsync -a --dry-run --exclude=P src/ dst/`), and is
// checked again against the installed rsync when there is one (test below).
const OWN_DIRS = ['a', 'a/b', 'a/b/c', 'a/b/foo', 'a/c', 'foo', 'signer', 'signer/x.tmp', 'z', 'z/a', 'z/a/b'];
const OWN_FILES = [
  '*x',
  '7up',
  'a/b/c/deep.txt',
  'a/b/foo/db.properties',
  'a/c/f',
  'a/x.tmp',
  'back\\slash',
  'c',
  'foo/db.properties',
  'keys.tmp',
  'q1.txt',
  'qé.txt',
  'signer/x.tmp/inner',
  'weird[1',
  'z/a/b/f',
];
const ownTree: Tree = { paths: [...OWN_DIRS, ...OWN_FILES].sort(), dirs: new Set(OWN_DIRS) };
const A_ALL = ['a', 'a/b', 'a/b/c', 'a/b/c/deep.txt', 'a/b/foo', 'a/b/foo/db.properties', 'a/c', 'a/c/f', 'a/x.tmp'];
const A_B = ['a/b', 'a/b/c', 'a/b/c/deep.txt', 'a/b/foo', 'a/b/foo/db.properties'];
const OWN_CASES: Array<[pattern: string, excluded: string[]]> = [
  ['db.properties', ['a/b/foo/db.properties', 'foo/db.properties']], // depth 4 too
  ['foo/db.properties', ['a/b/foo/db.properties', 'foo/db.properties']], // last 2 components, any depth
  ['*.tmp', ['a/x.tmp', 'keys.tmp', 'signer/x.tmp', 'signer/x.tmp/inner']], // a directory x.tmp too
  ['x.tmp/', ['signer/x.tmp', 'signer/x.tmp/inner']], // not the file a/x.tmp
  ['a/**/c', ['a/b/c', 'a/b/c/deep.txt']], // "**" is no globstar: a/c is kept
  ['**/c', ['a/b/c', 'a/b/c/deep.txt', 'a/c', 'a/c/f', 'c']], // but a leading "**/" matches at the top
  ['*/c', ['a/b/c', 'a/b/c/deep.txt', 'a/c', 'a/c/f']],
  ['/a/***', A_ALL],
  ['a/***', [...A_ALL, 'z/a', 'z/a/b', 'z/a/b/f']],
  ['a/b', [...A_B, 'z/a/b', 'z/a/b/f']],
  ['/a/b', A_B],
  ['[[:digit:]]*', ['7up']],
  ['\\*x', ['*x']], // wildcards present: the backslash escapes
  ['back\\slash', ['back\\slash']], // no wildcards: the backslash is literal
  ['q?.txt', ['q1.txt']], // "?" is one byte and é is two
  ['q??.txt', ['qé.txt']],
  ['weird[1', []], // an unterminated class matches nothing
  ['/', []],
  ['- x.tmp', ['a/x.tmp', 'signer/x.tmp', 'signer/x.tmp/inner']], // "- " prefix: still an exclude
];

for (const [pattern, excluded] of OWN_CASES) {
  test(`own case ${JSON.stringify(pattern)}`, () => {
    assert.deepEqual(disagreements([pattern], ownTree, excluded), []);
  });
}

function rsyncVersion(): string | undefined {
  try {
    return execFileSync('rsync', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    return undefined;
  }
}

test('own cases agree with the installed rsync', { skip: rsyncVersion() === undefined && 'rsync not installed' }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xroad-sync-filter-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const src = join(dir, 'src');
  for (const d of OWN_DIRS) mkdirSync(join(src, d), { recursive: true });
  for (const f of OWN_FILES) writeFileSync(join(src, f), '');
  const problems: string[] = [];
  for (const [pattern, excluded] of OWN_CASES) {
    const out = execFileSync(
      'rsync',
      ['-a', '--dry-run', '--out-format=%n', `--exclude=${pattern}`, `${src}/`, join(dir, 'dst') + '/'],
      // Without a UTF-8 locale rsync leaves non-ASCII names (qé.txt) out of its list.
      { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C.UTF-8' } },
    );
    const kept = new Set(out.split('\n').map((line) => line.replace(/\/$/, '')));
    const actual = ownTree.paths.filter((p) => !kept.has(p));
    if (JSON.stringify(actual) !== JSON.stringify([...excluded].sort())) {
      problems.push(`${JSON.stringify(pattern)}: ${rsyncVersion()} excludes ${JSON.stringify(actual)}`);
    }
  }
  assert.deepEqual(problems, []);
});

test('isExcludedPath keeps up with a large tree', () => {
  const filter = compileFilter([...DEFAULT_EXCLUDES, '**/softtoken/*', 'conf.d/*.ini', '[Cc]ache/']);
  const paths: string[] = [];
  for (let i = 0; i < 200; i++) {
    for (let j = 0; j < 50; j++) paths.push(`d${i}/sub${j % 7}/leaf${j}/file${j}.xml`);
  }
  const start = process.hrtime.bigint();
  let excluded = 0;
  for (const p of paths) if (filter.isExcludedPath(p, false)) excluded++;
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  assert.equal(excluded, 0);
  assert.ok(ms < 1000, `${paths.length} paths took ${ms.toFixed(0)} ms`);
});
