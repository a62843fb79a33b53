/**
 * Every export of src/ is imported somewhere else (src/, bench/ or test/):
 * an export nobody imports is dead weight or should be module-private. A
 * name counts as used when a module that imports the defining module (by a
 * relative specifier, static or dynamic) mentions it. `tsc --noUnusedLocals`
 * covers what is not exported. Values only (functions, classes, constants):
 * an exported interface or type often names the parameters of an exported
 * function, which is documentation, not weight.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Exports used from outside the repository's TypeScript, or on purpose kept. */
const ALLOWED = new Set<string>([
  // (none yet: add `src/file.ts:name` with a comment saying who uses it)
]);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const full = path.join(dir, d.name);
    if (d.isDirectory()) return d.name === 'node_modules' || d.name === 'results' ? [] : sources(full);
    return d.name.endsWith('.ts') && !d.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** Exported values: declared ones and those in `export { … }` lists (type-only entries left out). */
function exportedValues(text: string): string[] {
  const declared = [
    ...text.matchAll(/^export\s+(?:declare\s+)?(?:async\s+)?(?:abstract\s+)?(?:function\*?|class|const|let|var|enum)\s+([A-Za-z_$][\w$]*)/gm),
  ].map((m) => m[1]!);
  const listed = [...text.matchAll(/^export\s+\{([^}]*)\}/gm)].flatMap((m) =>
    m[1]!
      .split(',')
      .map((part) => part.trim())
      .filter((part) => part !== '' && !part.startsWith('type '))
      .map((part) =>
        part
          .split(/\s+as\s+/)
          .pop()!
          .trim(),
      ),
  );
  return [...declared, ...listed];
}

/** Absolute paths (as .ts) of the modules a file names by relative specifier. */
function importedModules(file: string, text: string): Set<string> {
  const specs = [...text.matchAll(/['"](\.{1,2}\/[^'"]+)\.js['"]/g)].map((m) => m[1]!);
  return new Set(specs.map((s) => path.resolve(path.dirname(file), `${s}.ts`)));
}

describe('dead exports', () => {
  it('every export in src/ is imported by another module', () => {
    const all = ['src', 'bench', 'test'].flatMap((d) => sources(path.join(ROOT, d)));
    const texts = new Map(all.map((f) => [f, readFileSync(f, 'utf8')]));
    const importers = new Map<string, string[]>();
    for (const [file, text] of texts) {
      for (const mod of importedModules(file, text)) importers.set(mod, [...(importers.get(mod) ?? []), file]);
    }
    const dead: string[] = [];
    const srcFiles = all.filter((f) => f.startsWith(path.join(ROOT, 'src') + path.sep));
    assert.ok(srcFiles.length > 20, `read ${srcFiles.length} sources`);
    for (const file of srcFiles) {
      const rel = path.relative(ROOT, file);
      for (const name of exportedValues(texts.get(file)!)) {
        if (ALLOWED.has(`${rel}:${name}`)) continue;
        const word = new RegExp(`\\b${name.replace(/\$/g, '\\$')}\\b`);
        if (!(importers.get(file) ?? []).some((user) => word.test(texts.get(user)!))) dead.push(`${rel}: ${name}`);
      }
    }
    assert.deepEqual(dead, [], `exports nobody imports (remove them, make them module-private, or allow-list them with a reason):\n${dead.join('\n')}`);
  });

  it('the check sees declared and listed value exports', () => {
    assert.deepEqual(
      exportedValues(
        'export async function a() {}\nexport interface B {}\nexport { c, d as e, type H };\nexport type { F } from "x";\nconst g = 1;\nexport class K {}',
      ),
      ['a', 'K', 'c', 'e'],
    );
  });
});
