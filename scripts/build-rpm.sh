#!/usr/bin/env bash
# Builds dist/packages/xroad-sync-<version>-1.<arch>.rpm from the single
# executable (scripts/build-exe.sh) with packaging/rpm/xroad-sync.spec, when
# rpmbuild is installed (Debian/Ubuntu: apt-get install rpm; RHEL: dnf install
# rpm-build). Without rpmbuild it says so and exits 0.
#
#   XROAD_SYNC_EXE=path bash scripts/build-rpm.sh   # package this executable (default: build dist/exe/xroad-sync)
set -euo pipefail
umask 022

cd "$(dirname "$0")/.."
repo="$(pwd)"

if ! command -v rpmbuild >/dev/null 2>&1; then
    echo "build-rpm: skipped: rpmbuild not found (Debian/Ubuntu: apt-get install rpm; RHEL: dnf install rpm-build)"
    exit 0
fi

version="$(node -p "require('./package.json').version")"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

# shellcheck source=package-lib.sh
. "$repo/scripts/package-lib.sh"
package_inputs
arch="$rpm_arch"

top="$repo/dist/rpm"
one_build_at_a_time "$repo/dist" build-rpm
rm -rf "$top"
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS,BUILDROOT} "$repo/dist/packages"
cp "$exe" "$licenses/THIRD-PARTY-LICENSES.txt" "$top/SOURCES/"
cp "$node_license" "$top/SOURCES/node-license"
cp service/xroad-sync.service service/xroad-sync.timer service/xroad-sync-daemon.service \
   service/xroad-sync.tmpfiles.conf service/logrotate service/xroad-sync.default service/xroad-sync.cron \
   service/sshd_config.d-xroad-slave.conf README.md "$top/SOURCES/"
cp packaging/copyright "$top/SOURCES/COPYING"
cp packaging/rpm/xroad-sync.spec "$top/SPECS/"

# --nodeps: the build needs nothing, and a Debian host has no rpm database of its deps.
rpmbuild -bb --nodeps --target "$arch" \
    --define "_topdir $top" \
    --define "xs_version $version" \
    --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" \
    "$top/SPECS/xroad-sync.spec" >"$top/rpmbuild.log" 2>&1 || {
        cat "$top/rpmbuild.log" >&2
        echo "build-rpm: rpmbuild failed" >&2
        exit 1
    }

rpm_file="$(find "$top/RPMS" -name "xroad-sync-${version}-1*.${arch}.rpm" | head -n1)"
[ -n "$rpm_file" ] || { cat "$top/rpmbuild.log" >&2; echo "build-rpm: no RPM produced" >&2; exit 1; }
# Copied beside it, then renamed: a reader never sees a half-copied package.
cp "$rpm_file" "$repo/dist/packages/$(basename "$rpm_file").partial"
mv -f "$repo/dist/packages/$(basename "$rpm_file").partial" "$repo/dist/packages/$(basename "$rpm_file")"
echo "build-rpm: $repo/dist/packages/$(basename "$rpm_file") ($(du -m --apparent-size "$rpm_file" | cut -f1) MB)"
