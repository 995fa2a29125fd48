#!/bin/bash
# Fetches what the cgroup v2 test VM needs into $TALLY_VM_CACHE (default /var/cache/tally-vm):
# QEMU with its firmware and a Debian kernel, as .deb files unpacked with dpkg-deb -x.
#
# Why not `apt-get install qemu-system-x86`: on the build machines it would remove the
# preinstalled qemu-utils 10 (from backports) to satisfy version constraints. Unpacking the
# packages into a private tree leaves the host's package set alone; only the few shared
# libraries the QEMU binary links against are installed with apt (plain libraries nothing else
# conflicts with, and `--no-remove` makes apt refuse rather than remove anything).
#
# Idempotent: each part (QEMU, each kernel) has a stamp file written after it was fully
# unpacked, so a second run only checks a few files and returns in milliseconds. Delete the
# cache directory (or one part's directory) to fetch again, e.g. after a Debian point release.
#
# Usage: hack/vm/fetch.sh           (see common.sh for the environment variables)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

qemu_stamp=$VM_QEMU_ROOT/.complete
kernel_stamp=$VM_KERNEL_DIR/.complete
guest_stamp=$VM_GUEST_ROOT/.complete
# The guest's programs are fetched again when the list of packages changes.
guest_ok() { [ -e "$guest_stamp" ] && [ "$(cat "$VM_GUEST_ROOT/.requested" 2>/dev/null)" = "$VM_GUEST_PKGS" ]; }

# Fast path, before taking the lock or touching apt. The library check is included because the
# libraries live outside the cache: a machine (or CI image) may get the cache restored from an
# earlier run without them.
libs_ok() { ! ldd "$VM_QEMU_BIN" 2>/dev/null | grep -q 'not found'; }
if [ -e "$qemu_stamp" ] && [ -e "$kernel_stamp" ] && guest_ok && libs_ok && [ -x "$VM_BUSYBOX" ]; then
    exit 0
fi

mkdir -p "$TALLY_VM_CACHE" 2>/dev/null || vm_die "cannot create $TALLY_VM_CACHE (set TALLY_VM_CACHE to a writable directory)"
# Two concurrent `make vm-test` runs must not unpack into the same tree at the same time.
exec 9>"$TALLY_VM_CACHE/.lock"
flock 9

export DEBIAN_FRONTEND=noninteractive
# apt-get download drops privileges to _apt, which cannot write into a root-owned cache
# directory and then warns; downloading as the calling user is what we want here.
APT_COMMON=(-o APT::Sandbox::User=root -q)
# apt_download runs in $(...) subshells, so "lists already updated in this run" is a file.
updated_flag=$TALLY_VM_CACHE/.apt-updated.$$
trap 'rm -f "$updated_flag"' EXIT

# suite_apt_opts SUITE: prints (one per line) the apt options of a private apt configuration
# that knows only SUITE: its own sources list, package lists and cache under the cache
# directory. The host's /etc/apt and /var/lib/apt/lists are neither read nor written (the
# archive keyring is shared: it signs every Debian suite, backports included). The lists are
# fetched the first time.
suite_apt_opts() {
    local suite=$1 aptdir=$TALLY_VM_CACHE/apt/$1
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $TALLY_VM_MIRROR $suite main" >"$aptdir/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o "Dir::Etc::SourceParts=$aptdir/none"
                -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache")
    if ! compgen -G "$aptdir/lists/*_Packages*" >/dev/null; then
        vm_log "fetching the package lists of $suite (private to $aptdir)"
        apt-get "${APT_COMMON[@]}" "${opts[@]}" update >/dev/null
    fi
    printf '%s\n' "${opts[@]}"
}

# apt_download DIR REQUEST [APT OPTIONS...]: downloads one package into DIR and prints the
# path of the .deb. If apt does not know the package (stale or empty package lists, e.g. in a
# fresh container) it updates the lists once and retries.
apt_download() {
    local dir=$1 req=$2 name; shift 2
    mkdir -p "$dir"
    if ! (cd "$dir" && apt-get "${APT_COMMON[@]}" "$@" download "$req" >/dev/null 2>"$dir/.err"); then
        if [ ! -e "$updated_flag" ]; then
            vm_log "apt does not know $req yet: running apt-get update"
            apt-get "${APT_COMMON[@]}" "$@" update >/dev/null
            : >"$updated_flag"
        fi
        (cd "$dir" && apt-get "${APT_COMMON[@]}" "$@" download "$req" >/dev/null 2>"$dir/.err") ||
            { cat "$dir/.err" >&2; rm -f "$dir/.err"; return 1; }
    fi
    rm -f "$dir/.err"
    # apt-get download names the file <name>_<version>_<arch>.deb; the newest one with that
    # name is the one just downloaded.
    # shellcheck disable=SC2012
    name=$(cd "$dir" && ls -t -- "${req%%[/=]*}"_*.deb 2>/dev/null | head -n1)
    [ -n "$name" ] || vm_die "apt-get download $req left no .deb in $dir"
    printf '%s\n' "$dir/$name"
}

# ---------------------------------------------------------------------------------------------
# QEMU
if [ ! -e "$qemu_stamp" ]; then
    vm_log "fetching QEMU ($VM_QEMU_PKGS${TALLY_VM_QEMU_SUITE:+, from $TALLY_VM_QEMU_SUITE}) into $VM_QEMU_ROOT"
    qemu_debs=$VM_DEBS/${VM_QEMU_ROOT##*/}
    rm -rf "$VM_QEMU_ROOT" "$qemu_debs"
    mkdir -p "$VM_QEMU_ROOT"
    suite_opts=()
    [ -z "$TALLY_VM_QEMU_SUITE" ] || mapfile -t suite_opts < <(suite_apt_opts "$TALLY_VM_QEMU_SUITE")
    for p in $VM_QEMU_PKGS; do
        # From the suite if it has the package, else (ipxe-qemu is not in backports) from the
        # host's sources.
        deb=$(apt_download "$qemu_debs" "$p" "${suite_opts[@]}" 2>/dev/null) ||
            deb=$(apt_download "$qemu_debs" "$p") || vm_die "apt-get download $p failed"
        dpkg-deb -x "$deb" "$VM_QEMU_ROOT"
        dpkg-deb -f "$deb" Depends >>"$VM_QEMU_ROOT/.depends"
        # shellcheck disable=SC2016  # dpkg's ${field} syntax, not the shell's
        dpkg-deb --show --showformat='${Package} ${Version}\n' "$deb" >>"$VM_QEMU_ROOT/.packages"
    done
    [ -x "$VM_QEMU_BIN" ] || vm_die "no $VM_QEMU_BIN after unpacking"
    # Documentation and manual pages are never read here, and the .deb files not again (their
    # names and versions are in .packages, their dependencies in .depends).
    rm -rf "$VM_QEMU_ROOT/usr/share/doc" "$VM_QEMU_ROOT/usr/share/man" "$qemu_debs"
    cp "$VM_QEMU_ROOT/.packages" "$qemu_stamp"
fi

# The shared libraries: install the known list (only what is not installed yet, so the common
# case never calls apt), then ask ldd what is still missing, on the binary and on the TCG
# accelerator module that Debian's QEMU 7.2 dlopen()s at start.
apt_install() {
    vm_log "installing the libraries QEMU needs: $*"
    apt-get -q install -y --no-install-recommends --no-remove "$@" >/dev/null && return 0
    apt-get -q update >/dev/null
    apt-get -q install -y --no-install-recommends --no-remove "$@" >/dev/null
}
missing_pkgs=()
for p in $VM_QEMU_LIBS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_pkgs+=("$p")
done
[ ${#missing_pkgs[@]} -eq 0 ] || apt_install "${missing_pkgs[@]}"
not_found() {
    for f in "$VM_QEMU_BIN" "$VM_QEMU_ROOT"/usr/lib/*/qemu/accel-tcg-*.so; do
        if [ -e "$f" ]; then ldd "$f" | awk '/not found/ { print $1 }'; fi
    done | sort -u
}
sonames=$(not_found)
if [ -n "$sonames" ]; then
    # Debian names the package of libfoo.so.N libfooN, or libfoo-N when foo ends in a digit.
    # Accept a candidate only if the QEMU packages depend on it.
    deps=$({ cat "$VM_QEMU_ROOT/.depends" 2>/dev/null || true; } | sed 's/[,|]/\n/g' |
           sed 's/^ *//; s/[ :].*//' | sort -u)
    pkgs=()
    for so in $sonames; do
        base=${so%%.so.*} ver=${so##*.so.}; ver=${ver%%.*}
        pkg=""
        for cand in "$base$ver" "$base-$ver"; do
            grep -qx "$cand" <<<"$deps" && pkg=$cand && break
        done
        [ -n "$pkg" ] || vm_die "qemu-system-x86_64 needs $so and no package it depends on is named for it: add it to VM_QEMU_LIBS in hack/vm/common.sh"
        pkgs+=("$pkg")
    done
    apt_install "${pkgs[@]}"
    sonames=$(not_found)
    [ -z "$sonames" ] || vm_die "qemu-system-x86_64 still misses: $sonames"
fi

# ---------------------------------------------------------------------------------------------
# Kernel
if [ ! -e "$kernel_stamp" ]; then
    suite_opts=()
    [ -z "$TALLY_VM_KERNEL_SUITE" ] || mapfile -t suite_opts < <(suite_apt_opts "$TALLY_VM_KERNEL_SUITE")
    vm_log "fetching kernel $TALLY_VM_KERNEL_PKG${TALLY_VM_KERNEL_SUITE:+ from $TALLY_VM_KERNEL_SUITE} into $VM_KERNEL_DIR"
    kernel_debs=$VM_DEBS/kernel/$(vm_kernel_key)
    rm -rf "$VM_KERNEL_DIR" "$kernel_debs"
    mkdir -p "$VM_KERNEL_DIR/root"
    # Follow meta packages: linux-image-cloud-amd64 only depends on linux-image-<release>-cloud-
    # amd64 (= version), which holds /boot/vmlinuz-<release> and the modules. Ask for that exact
    # version, so the pair stays consistent.
    req=$TALLY_VM_KERNEL_PKG
    for _ in 1 2 3; do
        deb=$(apt_download "$kernel_debs" "$req" "${suite_opts[@]}") || vm_die "apt-get download $req failed"
        # (no grep -q: it would close the pipe early and dpkg-deb would die of SIGPIPE)
        if dpkg-deb -c "$deb" | grep '/boot/vmlinuz-' >/dev/null; then
            dpkg-deb -x "$deb" "$VM_KERNEL_DIR/root"
            # shellcheck disable=SC2016  # dpkg's ${field} syntax, not the shell's
            dpkg-deb --show --showformat='${Package} ${Version}\n' "$deb" >"$VM_KERNEL_DIR/.package"
            break
        fi
        dep=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' |
              sed -n 's/^ *\(linux-image-[^ |]*\)\( *(= *\([^)]*\))\)\{0,1\}.*/\1=\3/p' | head -n1)
        [ -n "$dep" ] || vm_die "$req has no /boot/vmlinuz-* and no linux-image-* dependency"
        req=${dep%=}   # name=version, or just name when the dependency has no exact version
    done
    [ -e "$VM_KERNEL_DIR/.package" ] || vm_die "could not find a kernel image behind $TALLY_VM_KERNEL_PKG"
    rm -rf "$kernel_debs"

    # shellcheck disable=SC2012
    image=$(ls "$VM_KERNEL_DIR"/root/boot/vmlinuz-* | head -n1)
    release=${image##*/vmlinuz-}
    # Debian before trixie ships modules in /lib/modules, merged-/usr packages in /usr/lib/modules.
    moddir=$VM_KERNEL_DIR/root/lib/modules/$release
    if [ ! -d "$moddir" ] && [ -d "$VM_KERNEL_DIR/root/usr/lib/modules/$release" ]; then
        ln -s usr/lib "$VM_KERNEL_DIR/root/lib"
    fi
    [ -d "$moddir" ] || vm_die "no modules directory for $release in the kernel package"

    # Newer Debian kernels may compress their modules (.ko.xz, .ko.zst). Plain .ko files work
    # with any modprobe, so decompress once here.
    find "$moddir" -name '*.ko.xz' -exec xz -d {} +
    find "$moddir" -name '*.ko.zst' -exec zstd -q -d --rm {} +
    find "$moddir" -name '*.ko.gz' -exec gzip -d {} +
    # The package has no modules.dep (its postinst runs depmod). Generate it with busybox's
    # depmod: build-initramfs.sh reads it to find each module's dependencies.
    "$VM_BUSYBOX" depmod -b "$VM_KERNEL_DIR/root" "$release"

    cat >"$VM_KERNEL_DIR/env" <<EOF
KERNEL_RELEASE='$release'
KERNEL_IMAGE='$image'
KERNEL_MODULES='$moddir'
EOF
    cp "$VM_KERNEL_DIR/.package" "$kernel_stamp"
    vm_log "kernel $release ready ($(cat "$VM_KERNEL_DIR/.package"))"
fi

# ---------------------------------------------------------------------------------------------
# Guest programs (from the host's sources: they run on the guest's kernel, not its release)
if ! guest_ok; then
    vm_log "fetching the guest's programs ($VM_GUEST_PKGS) into $VM_GUEST_ROOT"
    guest_debs=$VM_DEBS/guest
    rm -rf "$VM_GUEST_ROOT" "$guest_debs"
    mkdir -p "$VM_GUEST_ROOT"
    for p in $VM_GUEST_PKGS; do
        deb=$(apt_download "$guest_debs" "$p") || vm_die "apt-get download $p failed"
        dpkg-deb -x "$deb" "$VM_GUEST_ROOT"
        # shellcheck disable=SC2016  # dpkg's ${field} syntax, not the shell's
        dpkg-deb --show --showformat='${Package} ${Version}\n' "$deb" >>"$VM_GUEST_ROOT/.packages"
    done
    rm -rf "$VM_GUEST_ROOT/usr/share/doc" "$VM_GUEST_ROOT/usr/share/man" "$guest_debs"
    echo "$VM_GUEST_PKGS" >"$VM_GUEST_ROOT/.requested"
    cp "$VM_GUEST_ROOT/.packages" "$guest_stamp"
fi

# busybox-static is the guest's userland; hack/install-deps.sh installs it with the other host
# packages the project needs (a no-op when everything is there).
if ! [ -x "$VM_BUSYBOX" ] || ldd "$VM_BUSYBOX" >/dev/null 2>&1; then
    "$HERE/../install-deps.sh"
    { [ -x "$VM_BUSYBOX" ] && ! ldd "$VM_BUSYBOX" >/dev/null 2>&1; } ||
        vm_die "$VM_BUSYBOX is missing or not static (install busybox-static)"
fi
