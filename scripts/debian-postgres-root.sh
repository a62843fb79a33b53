#!/usr/bin/env bash
# Prints the path of a Debian root holding that release's PostgreSQL server, for the
# serverconf replica tests on majors the host does not ship (test/helpers/postgres.ts runs
# the server chrooted into it). Built once and kept (a directory, used in place: the tests
# only add their own temp dirs under its /tmp and their OS user to its /etc/passwd):
#   debootstrap --variant=minbase SUITE, then, chrooted, with services kept from starting
#   (policy-rc.d) and no main cluster: apt-get install --no-install-recommends postgresql-N
#
#   bash scripts/debian-postgres-root.sh bullseye   # PostgreSQL 13 → /var/cache/xroad-sync-test/postgres-bullseye-<hash>
#   bash scripts/debian-postgres-root.sh trixie     # PostgreSQL 17
#   XROAD_SYNC_TEST_CACHE=DIR  where the root is kept (default /var/cache/xroad-sync-test, outside the clone)
#   DEBIAN_MIRROR=URL          default: the first URIs: of /etc/apt/sources.list.d/debian.sources, else deb.debian.org
# Needs root and debootstrap. Concurrent calls wait for one build (flock, shared with
# scripts/debian-test-root.sh). About 1-2 min per suite, once.
set -euo pipefail

suite="${1:?usage: debian-postgres-root.sh bullseye|bookworm|trixie}"
case "$suite" in
    bullseye) major=13 ;;
    bookworm) major=15 ;;
    trixie) major=17 ;;
    *) echo "debian-postgres-root: unknown suite $suite (bullseye, bookworm, trixie)" >&2; exit 1 ;;
esac
cache="${XROAD_SYNC_TEST_CACHE:-/var/cache/xroad-sync-test}"
key="$(printf '%s postgresql-%s minbase chroot-apt' "$suite" "$major" | sha256sum | cut -c1-12)"
root="$cache/postgres-$suite-$key"

if [ ! -x "$root/usr/lib/postgresql/$major/bin/postgres" ]; then
    [ "$(id -u)" = 0 ] || { echo "debian-postgres-root: needs root (debootstrap, chroot)" >&2; exit 1; }
    command -v debootstrap >/dev/null 2>&1 || { echo "debian-postgres-root: debootstrap not found (apt-get install debootstrap)" >&2; exit 1; }
    mkdir -p "$cache"
    exec 9>"$cache/.lock"
    flock 9
    if [ ! -x "$root/usr/lib/postgresql/$major/bin/postgres" ]; then
        mirror="${DEBIAN_MIRROR:-}"
        if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
            mirror="$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources | grep -v security | head -n1)"
        fi
        mirror="${mirror:-http://deb.debian.org/debian}"
        build="$(mktemp -d "$cache/build.XXXXXX")"
        trap 'rm -rf "$build"' EXIT
        log="$build/build.log"
        fail() { tail -n 30 "$log" >&2; echo "debian-postgres-root: $1 failed" >&2; exit 1; }
        echo "debian-postgres-root: debootstrap $suite + postgresql-$major from $mirror (once; kept as $root)" >&2
        debootstrap --variant=minbase "$suite" "$build/root" "$mirror" >"$log" 2>&1 || fail debootstrap
        # No service may start inside the build root, and no cluster is wanted: the tests make their own.
        printf '#!/bin/sh\nexit 101\n' >"$build/root/usr/sbin/policy-rc.d"
        chmod 755 "$build/root/usr/sbin/policy-rc.d"
        mkdir -p "$build/root/etc/postgresql-common"
        echo 'create_main_cluster = false' >"$build/root/etc/postgresql-common/createcluster.conf"
        chroot "$build/root" env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "postgresql-$major" >>"$log" 2>&1 ||
            fail "apt-get install postgresql-$major"
        # POSIX shared memory of a chrooted server lives in the root's /dev/shm (a plain directory here).
        chmod 1777 "$build/root/dev/shm"
        rm -rf "$build/root/var/cache/apt/archives/"*.deb "$build/root/var/lib/apt/lists/"*_Packages
        rm -rf "$root" # a root left without its server by an interrupted run
        mv "$build/root" "$root"
    fi
fi
echo "$root"
