#!/usr/bin/env bash
# Prints the path of a tar of a minimal Debian root for the system tests (systemd.test.ts,
# package-upgrade.test.ts), building it once per suite with debootstrap (about 70 s) and
# reusing it afterwards:
#   debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,logrotate,sudo SUITE
# A stock root: no Node.js, nothing of X-Road (the test adds what xroad-base would).
#
#   bash scripts/debian-test-root.sh [SUITE]             # → /var/cache/xroad-sync-test/SUITE-<hash>.tar
#   SUITE: bookworm (Debian 12, the default), trixie (13) or bullseye (11)
#   XROAD_SYNC_TEST_CACHE=DIR  where the tar is kept (default /var/cache/xroad-sync-test, outside the clone)
#   DEBIAN_MIRROR=URL          default: the first URIs: of /etc/apt/sources.list.d/debian.sources, else deb.debian.org
# Needs root, debootstrap, tar. Concurrent calls wait for one build (flock).
set -euo pipefail

suite="${1:-bookworm}"
case "$suite" in
    bullseye|bookworm|trixie) ;;
    *) echo "debian-test-root: unknown suite '$suite' (bullseye, bookworm or trixie)" >&2; exit 2 ;;
esac
include=systemd,systemd-sysv,dbus,logrotate,sudo
cache="${XROAD_SYNC_TEST_CACHE:-/var/cache/xroad-sync-test}"
key="$(printf '%s %s minbase' "$suite" "$include" | sha256sum | cut -c1-12)"
tar_file="$cache/$suite-$key.tar"

if [ ! -s "$tar_file" ]; then
    [ "$(id -u)" = 0 ] || { echo "debian-test-root: needs root (debootstrap)" >&2; exit 1; }
    command -v debootstrap >/dev/null 2>&1 || { echo "debian-test-root: debootstrap not found (apt-get install debootstrap)" >&2; exit 1; }
    mkdir -p "$cache"
    exec 9>"$cache/.lock"
    flock 9
    if [ ! -s "$tar_file" ]; then
        mirror="${DEBIAN_MIRROR:-}"
        if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
            mirror="$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources | grep -v security | head -n1)"
        fi
        mirror="${mirror:-http://deb.debian.org/debian}"
        build="$(mktemp -d "$cache/build.XXXXXX")"
        trap 'rm -rf "$build"' EXIT
        echo "debian-test-root: debootstrap $suite from $mirror into $build (once; cached as $tar_file)" >&2
        debootstrap --variant=minbase --include="$include" "$suite" "$build/root" "$mirror" >"$build/debootstrap.log" 2>&1 || {
            tail -n 30 "$build/debootstrap.log" >&2
            echo "debian-test-root: debootstrap failed" >&2
            exit 1
        }
        # apt's downloaded .debs are not needed in every copy.
        rm -rf "$build/root/var/cache/apt/archives/"*.deb
        tar -C "$build/root" --numeric-owner -cf "$build/root.tar" .
        mv "$build/root.tar" "$tar_file"
    fi
fi
echo "$tar_file"
