/**
 * Layers only point down. Every module under src/ belongs to a layer (by its
 * folder, or its own name for top-level files); it may import from its own
 * layer and from lower ones, never from a higher one. The order follows a
 * pass's data flow: vocabulary → filter and settings → the pure planner →
 * the two endpoints (master and target) → stage → commit → report, state and
 * health (the verdicts on it) → the pass → the runner shared by daemon and
 * CLI, with the operator's procedures beside it (pause, check, demo) →
 * daemon → CLI. A pass's outcome is vocabulary: pass/outcome.ts is lowest.
 * The check reads the TypeScript sources, so type-only imports count too.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src');

/** Lowest first. A module's layer is the first entry whose prefix matches its path relative to src/. */
export const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'tree.ts', 'util/', 'filter/types.ts', 'pass/outcome.ts'],
  ['filter/', 'settings/'],
  ['plan/'],
  ['local/', 'remote/', 'replica/'],
  ['stage/', 'serve/'],
  ['commit/'],
  ['report/', 'state/', 'health/'],
  ['pass/'],
  ['run/', 'pause/', 'check/', 'demo/'],
  ['daemon/'],
  ['cli/'],
];

function layerOf(rel: string): number {
  const index = LAYERS.findIndex((prefixes) =>
    prefixes.some((p) => rel === p || rel.startsWith(p) || (!p.includes('/') && !p.includes('.') && rel.startsWith(`${p}.`))),
  );
  if (index < 0) throw new Error(`src/${rel} belongs to no layer: add it to LAYERS in test/unit/layers.test.ts`);
  return index;
}

function sources(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const full = path.join(dir, d.name);
    if (d.isDirectory()) return sources(full);
    return d.name.endsWith('.ts') && !d.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** Relative specifiers of static, type-only, re-export and dynamic imports. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;'"]*?from\s*'(\.[^']+)'/g), ...text.matchAll(/\bimport\(\s*'(\.[^']+)'\s*\)/g)];
  return found.map((m) => m[1]!);
}

describe('layers', () => {
  it('every import in src/ points to the same or a lower layer', () => {
    const upward: string[] = [];
    const files = sources();
    assert.ok(files.length > 20, `read ${files.length} sources from ${SRC}`);
    for (const file of files) {
      const rel = path.relative(SRC, file);
      for (const spec of importsOf(file)) {
        const target = path.relative(SRC, path.resolve(path.dirname(file), spec)).replace(/\.js$/, '.ts');
        if (layerOf(target) > layerOf(rel)) upward.push(`src/${rel} imports src/${target} (layer ${layerOf(rel)} → ${layerOf(target)})`);
      }
    }
    assert.deepEqual(upward, [], `imports that point up a layer:\n${upward.join('\n')}`);
  });

  it('the check itself sees an upward import', () => {
    assert.ok(layerOf('cli/main.ts') > layerOf('pass/run-pass.ts') && layerOf('pass/run-pass.ts') > layerOf('remote/provider.ts'));
    assert.deepEqual(importsOf(path.join(SRC, 'cli/main.ts')).length > 0, true);
  });
});
