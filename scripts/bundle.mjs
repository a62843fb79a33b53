#!/usr/bin/env node
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// Bundles src/cli/main.ts and every dependency into one file for the .deb and
// the .rpm: dist/bundle/xroad-sync.cjs (run it with node >= 20, any name, no
// node_modules needed), plus dist/bundle/THIRD-PARTY-LICENSES.txt listing the
// bundled packages with their license texts.
//
//   node scripts/bundle.mjs [--outfile FILE]
//
// Choices:
// - CommonJS output. /usr/bin/xroad-sync has no extension and no package.json
//   beside it, so node loads it as CommonJS; an ESM bundle would need module
//   syntax detection (only default from node 20.19/22.7). esbuild converts
//   ESM-only chokidar 5 and our own ESM to CommonJS (no top-level await is
//   used; esbuild would refuse it).
// - ssh2's optional native addons stay out: cpu-features and the
//   sshcrypto.node binding are replaced by a module that throws. ssh2 loads
//   both inside try/catch and falls back to its pure-JS crypto without ever
//   calling require() for them: in the single executable (scripts/build-exe.sh)
//   such a require() would print Node's "only supports loading built-in
//   modules" warning at every start. Why not ship them: CONTRIBUTING.md "Packaging".
// - The version: main.ts and report/itemize.ts read ../../../package.json
//   relative to their module, which does not exist beside a bundle. The
//   plugin below replaces that read with the version as a string literal at
//   bundle time, so `xroad-sync --version` and the log's "[receiver=xroad-sync
//   VERSION]" stay right. The build fails if main.ts no longer has the
//   expression, instead of producing a binary that crashes on start.
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const outIndex = process.argv.indexOf('--outfile');
const outfile = path.resolve(outIndex > 0 ? process.argv[outIndex + 1] : path.join(root, 'dist', 'bundle', 'xroad-sync.cjs'));
const entry = path.join(root, 'src', 'cli', 'main.ts');

// The exact expression both modules use; replaced by the package.json text it would have read.
const VERSION_READ = "readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')";
const patched = new Set();

/** @type {import('esbuild').Plugin} */
const versionPlugin = {
  name: 'xroad-sync-version',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes(VERSION_READ)) return undefined;
      patched.add(path.relative(root, args.path));
      return { contents: text.split(VERSION_READ).join(JSON.stringify(JSON.stringify({ version: pkg.version }))), loader: 'ts' };
    });
  },
};

/** @type {import('esbuild').Plugin} */
const nativeAddons = {
  name: 'native-addons-left-out',
  setup(b) {
    // ssh2: require('./crypto/build/Release/sshcrypto.node') and require('cpu-features'), each in try/catch.
    b.onResolve({ filter: /\.node$|^cpu-features$/ }, (args) => ({ path: args.path, namespace: 'left-out' }));
    b.onLoad({ filter: /.*/, namespace: 'left-out' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is not bundled (optional native addon)`)});`,
      loader: 'js',
    }));
  },
};

/**
 * ssh2's index.js loads its HTTP(S)-over-SSH agents (ssh2.HTTPAgent, HTTPSAgent) at start, and with them
 * node:http, node:https and node:tls: ~4 ms of CPU on every start of the executable (measured, docs/performance.md).
 * xroad-sync never uses them; the stub keeps the names and fails loudly if one is ever used.
 */
/** @type {import('esbuild').Plugin} */
const unusedHttpAgents = {
  name: 'ssh2-http-agents-left-out',
  setup(b) {
    b.onResolve({ filter: /^\.\/http-agents\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]ssh2[\\/]lib$/.test(args.resolveDir) ? { path: 'ssh2-http-agents', namespace: 'left-out-agents' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'left-out-agents' }, () => ({
      contents: [
        'class NotBundled { constructor() { throw new Error("ssh2 HTTP(S) agents are not bundled in xroad-sync"); } }',
        'module.exports = { SSHTTPAgent: NotBundled, SSHTTPSAgent: NotBundled };',
      ].join('\n'),
      loader: 'js',
    }));
  },
};

/**
 * ssh2 fills every packet's padding with its own randomFillSync() call: an OpenSSL RAND_bytes (and a
 * getpid) per packet, ~0.35 ms of a daemon's ~5 ms no-change pass (~50 packets; docs/performance.md).
 * Here the padding comes from a pool of CSPRNG bytes filled 4 KiB at a time, each byte used once: the
 * same kind of bytes, fetched in bulk (Node's randomUUID() pools the same way). The build fails if
 * ssh2's padding calls change shape, rather than shipping an unpatched or half-patched crypto.js.
 */
const PADDING_CALL = 'randomFillSync(packet, 5 + payloadLen, padLen);';
const PADDING_POOL = `
// xroad-sync bundle (scripts/bundle.mjs): packet padding from a pool of CSPRNG bytes.
const PADDING_POOL = Buffer.allocUnsafe(4096);
let paddingPoolPos = PADDING_POOL.length;
function fillPadding(packet, offset, len) {
  if (paddingPoolPos + len > PADDING_POOL.length) {
    randomFillSync(PADDING_POOL);
    paddingPoolPos = 0;
  }
  PADDING_POOL.copy(packet, offset, paddingPoolPos, paddingPoolPos + len);
  paddingPoolPos += len;
}
`;
let paddingCalls = 0;

/** @type {import('esbuild').Plugin} */
const pooledPadding = {
  name: 'ssh2-pooled-padding',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/]ssh2[\\/]lib[\\/]protocol[\\/]crypto\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      const parts = text.split(PADDING_CALL);
      paddingCalls = parts.length - 1;
      const other = (text.match(/randomFillSync\(/g) ?? []).length - paddingCalls;
      if (paddingCalls === 0 || other !== 0) return undefined; // checked after the build
      return { contents: parts.join('fillPadding(packet, 5 + payloadLen, padLen);') + PADDING_POOL, loader: 'js' };
    });
  },
};

mkdirSync(path.dirname(outfile), { recursive: true });
const result = await build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  plugins: [versionPlugin, nativeAddons, unusedHttpAgents, pooledPadding],
  metafile: true,
  legalComments: 'eof',
  logLevel: 'warning',
  // Keep names readable in stack traces. Minifying (whitespace and syntax, names kept) shrinks the
  // bundle by a third but saves no measurable start-up time with the executable's code cache, and
  // target node24 emits the same code as node20 (docs/performance.md).
  minify: false,
});

if (!readFileSync(outfile, 'utf8').includes('function fillPadding(packet, offset, len)')) {
  console.error(
    `bundle: ssh2's lib/protocol/crypto.js no longer pads with "${PADDING_CALL}" only (${paddingCalls} such calls found);\nupdate the pooledPadding plugin in scripts/bundle.mjs.`,
  );
  process.exit(1);
}
if (!patched.has(path.join('src', 'cli', 'main.ts'))) {
  console.error(
    `bundle: src/cli/main.ts no longer contains ${VERSION_READ};\nupdate VERSION_READ in scripts/bundle.mjs, or the bundle cannot tell its version.`,
  );
  process.exit(1);
}
const first = readFileSync(outfile, 'utf8').split('\n', 1)[0];
if (!first.startsWith('#!/usr/bin/env ')) {
  console.error(`bundle: expected the interpreter line from main.ts at the top of ${outfile}, found ${JSON.stringify(first)}`);
  process.exit(1);
}

// Third-party packages that ended up in the bundle, with their license texts.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (!m) continue;
  const dir = path.join(root, input.slice(0, m.index + m[0].length));
  if (packages.has(dir)) continue;
  const meta = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const licenseFile = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  packages.set(dir, {
    name: meta.name,
    version: meta.version,
    license: licenseName(meta.license ?? meta.licenses),
    text: licenseFile ? readFileSync(path.join(dir, licenseFile), 'utf8').trim() : '(the package ships no license file)',
  });
}
const list = [...packages.values()].sort((a, b) => a.name.localeCompare(b.name));
const notices = [
  `xroad-sync ${pkg.version} bundles these packages (${list.length}):`,
  '',
  ...list.map((p) => `  ${p.name} ${p.version} (${p.license})`),
  '',
  ...list.flatMap((p) => ['-'.repeat(78), `${p.name} ${p.version} (${p.license})`, '', p.text, '']),
].join('\n');
writeFileSync(path.join(path.dirname(outfile), 'THIRD-PARTY-LICENSES.txt'), notices);
// Debian policy 12.5: a license in /usr/share/common-licenses is referred to, not copied (lintian
// errors copyright-file-contains-full-apache-2-license otherwise). MIT, ISC, BSD-3 and Unlicense texts stay.
const COMMON = { 'Apache-2.0': 'Apache-2.0', 'GPL-2.0': 'GPL-2', 'GPL-3.0': 'GPL-3', 'LGPL-2.1': 'LGPL-2.1', 'MPL-2.0': 'MPL-2.0' };
const SEPARATOR = '-'.repeat(78);
writeFileSync(
  path.join(path.dirname(outfile), 'THIRD-PARTY-LICENSES.debian.txt'),
  [
    notices.split(`\n${SEPARATOR}\n`)[0],
    ...list.map((p) => {
      const common = COMMON[p.license];
      const text = common ? `On Debian systems the full text of the ${p.license} license is in /usr/share/common-licenses/${common}.` : p.text;
      return [`${p.name} ${p.version} (${p.license})`, '', text, ''].join('\n');
    }),
  ].join(`\n${SEPARATOR}\n`),
);

function licenseName(field) {
  if (typeof field === 'string') return field;
  if (Array.isArray(field)) return field.map(licenseName).join(' OR ');
  if (field && typeof field.type === 'string') return field.type;
  return 'UNKNOWN';
}

const size = readFileSync(outfile).length;
console.log(
  `bundle: ${path.relative(process.cwd(), outfile)} (${Math.round(size / 1024)} KiB, ${list.length} packages, version ${pkg.version}${existsSync(outfile) ? '' : ' MISSING'})`,
);
