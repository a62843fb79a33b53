#!/usr/bin/env node
// Applies deliberate breakages of the safety promises (and of the idle daemon's thrift) one at a time, in a
// scratch copy of the tree, and runs the tests that should catch each. A
// breakage that "survives" (all its tests still pass) is a hole in the suite.
//
//   node scripts/breakage-check.mjs            # every breakage
//   node scripts/breakage-check.mjs keyconf    # those whose name contains "keyconf"
//
// Exit 0 when every breakage was caught, 1 when one survived, 2 when one no
// longer applies (the code it patches moved: update the table below).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** name, file, the exact text to find, what replaces it, the compiled tests to run. */
const BREAKAGES = [
  {
    name: 'keyconf.xml no longer renamed last',
    file: 'src/commit/order.ts',
    find: "export const COMMIT_LAST: readonly string[] = ['signer/keyconf.xml'];",
    replace: 'export const COMMIT_LAST: readonly string[] = [];',
    tests: ['dist/test/system/commit-durability.test.js', 'dist/test/integration/commit-ops.test.js'],
  },
  {
    name: 'temp file not fsynced before its rename',
    file: 'src/stage/stage.ts',
    find: '    if (!flushedLater) await fsyncFd(fd);\n',
    replace: '    void fsyncFd;\n',
    tests: ['dist/test/system/commit-durability.test.js'],
  },
  {
    name: 'many staged files renamed without the one filesystem flush',
    file: 'src/stage/stage.ts',
    find: '        await flushStaged(opts.targetRoot, staged);\n',
    replace: '        void flushStaged;\n        void staged;\n',
    tests: ['dist/test/system/commit-durability.test.js'],
  },
  {
    name: 'the commit does not wait for the flush of many staged files before its journal',
    file: 'src/commit/commit.ts',
    find: '    await staging.durable;\n',
    replace: '    void staging.durable;\n',
    tests: ['dist/test/system/commit-durability.test.js'],
  },
  {
    name: 'journal directory not fsynced before the first rename',
    file: 'src/commit/journal.ts',
    find: '        await writeFileAtomic(path, text, { fsync: true, mode: 0o600, chown: stateFileOwner(stateDir) });\n        await fsyncDir(stateDir);\n',
    replace: '        await writeFileAtomic(path, text, { fsync: true, mode: 0o600, chown: stateFileOwner(stateDir) });\n',
    tests: ['dist/test/system/commit-durability.test.js'],
  },
  {
    name: 'touched directories not fsynced at the end of the commit',
    file: 'src/commit/ops.ts',
    find: "  ops.push({ op: 'fsync', dirs: [...touched].sort() });\n",
    replace: '',
    tests: ['dist/test/system/commit-durability.test.js', 'dist/test/integration/commit-ops.test.js'],
  },
  {
    name: 'directory attributes applied shallowest first',
    file: 'src/commit/ops.ts',
    find: 'return [...ops.values()].sort((a, b) => depthOf(b.path) - depthOf(a.path));',
    replace: 'return [...ops.values()].sort((a, b) => depthOf(a.path) - depthOf(b.path));',
    tests: ['dist/test/integration/commit-ops.test.js'],
  },
  {
    name: 'an idle daemon pass scans the target again',
    file: 'src/pass/plan-pass.ts',
    find: '  const reused = (preview ? undefined : hooks.targetScan) ?? known?.reusable();\n',
    replace: '  const reused = (preview ? undefined : hooks.targetScan) ?? (known?.reusable() && undefined);\n',
    tests: ['dist/test/system/daemon-idle.test.js'],
  },
  {
    name: 'an idle daemon pass writes slave-sync.log',
    file: 'src/run/quiet-passes.ts',
    find: '    const omit = plain && this.previousPlain',
    replace: '    const omit = false && plain && this.previousPlain',
    tests: ['dist/test/system/daemon-idle.test.js'],
  },
];

function run(cmd, args, cwd) {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 600_000, env: { ...process.env, CI: process.env.CI ?? '' } });
}

const only = process.argv[2];
let survived = 0;
let stale = 0;
for (const b of BREAKAGES.filter((x) => !only || x.name.includes(only))) {
  const scratch = mkdtempSync(path.join(tmpdir(), 'xroad-sync-breakage-'));
  try {
    for (const entry of ['src', 'test', 'bench', 'package.json', 'tsconfig.json'])
      cpSync(path.join(ROOT, entry), path.join(scratch, entry), { recursive: true });
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(scratch, 'node_modules'));
    const file = path.join(scratch, b.file);
    const text = readFileSync(file, 'utf8');
    if (!text.includes(b.find)) {
      console.log(`STALE     ${b.name}: ${b.file} no longer contains the text to break`);
      stale++;
      continue;
    }
    writeFileSync(file, text.replace(b.find, b.replace));
    const build = run('npx', ['tsc', '-p', 'tsconfig.json'], scratch);
    if (build.status !== 0) {
      console.log(`CAUGHT    ${b.name}: the build fails`);
      continue;
    }
    const tests = run(process.execPath, ['--test', '--test-concurrency=1', ...b.tests], scratch);
    if (tests.status === 0) {
      console.log(`SURVIVED  ${b.name}: ${b.tests.join(' ')} still pass`);
      survived++;
    } else {
      const failed = (/^# fail (\d+)/m.exec(tests.stdout) ?? [])[1] ?? '?';
      console.log(`CAUGHT    ${b.name}: ${failed} failing test(s)`);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
process.exit(stale ? 2 : survived ? 1 : 0);
