#!/usr/bin/env bash
# `npm test`'s pretest: the Debian packages the test suite needs. As root it
# installs what is missing (apt-get update only then); without root it fails
# with the one command to run. Quick when everything is there (one dpkg-query).
#
# Keep this list and .ci/run's install line the same.
#   openssh-server openssh-client  the real-SSH tests (sshd, sftp-server, ssh, ssh-keygen)
#   rsync                          comparisons and the bench
#   systemd logrotate              systemd-analyze verify/security, logrotate -d
#   lintian rpm cpio dpkg-dev binutils   package tests (dpkg-shlibdeps, objdump, rpmbuild, rpm2cpio)
#   time                           the bench
#   postgresql-15                  the serverconf replica tests (their own clusters in temp dirs)
#   debootstrap systemd-container sudo   test/system/systemd.test.ts (a Debian 12 root under systemd-nspawn)
#   strace                         test/system/commit-durability.test.ts (the commit's fsync and rename order), test/system/daemon-idle.test.ts
#   faketime                       test/integration/daemon-clock.test.ts (libfaketime: the daemon's wall clock stepped back)
#   prometheus                     promtool check metrics on the --metrics-file output (only /usr/bin/promtool is used; the server is not started)
set -euo pipefail

packages=(openssh-server openssh-client rsync systemd logrotate lintian rpm cpio dpkg-dev binutils time postgresql-15
          debootstrap systemd-container sudo strace faketime prometheus)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "test-setup: not a Debian-based system (no dpkg-query): install the equivalents of: ${packages[*]}" >&2
    exit 1
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test-setup: the tests need Debian packages that are not installed. Run:" >&2
        echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "test-setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" = 0 ]; then
    mkdir -p /run/sshd
fi
