#!/bin/bash
# Builds the test VM's initramfs: a gzip'd newc cpio archive holding
#   /bin/busybox + one symlink per applet   the guest's whole userland (busybox-static)
#   /init                                   hack/vm/init.sh
#   /lib/modules/<release>/                 the kernel modules of $TALLY_VM_MODULES with their
#                                           dependencies, and a modules.dep made by depmod -b
#   /etc/passwd, /etc/group                 root, nobody and tally-rootless (the rootless
#                                           tests' user), for tools that look names up
#   /payload/                               a copy of PAYLOAD_DIR (symlinks followed)
#
# Usage: hack/vm/build-initramfs.sh OUT.cpio.gz PAYLOAD_DIR
# Needs hack/vm/fetch.sh to have run (for the kernel's modules). Everything is built in a
# temporary directory that is removed on exit; only OUT is written.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

[ $# -eq 2 ] || { echo "usage: $0 OUT.cpio.gz PAYLOAD_DIR" >&2; exit 2; }
out=$1 payload=$2
[ -d "$payload" ] || vm_die "payload directory $payload does not exist"
[ -e "$VM_KERNEL_DIR/env" ] || vm_die "no kernel in $VM_KERNEL_DIR: run hack/vm/fetch.sh first"
# shellcheck source=/dev/null
. "$VM_KERNEL_DIR/env"
ldd "$VM_BUSYBOX" >/dev/null 2>&1 && vm_die "$VM_BUSYBOX is dynamically linked: install busybox-static"

stage=$(mktemp -d "${TMPDIR:-/tmp}/tally-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# Skeleton. /newroot is where /init mounts the tmpfs it switch_roots into.
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/tally-vm,dev,proc,sys,tmp,run,root,mnt,newroot,payload}
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/root"
# The kernel's built-in initramfs already has /dev/console (init's first stdout); a node of our
# own covers kernels built without it. Needs root (mknod); skipped otherwise.
mknod -m 600 "$stage/dev/console" c 5 1 2>/dev/null || true

# busybox: `--list-full` names each applet with its usual directory (bin/sh, sbin/modprobe,
# usr/bin/awk...), so the guest gets a normal-looking PATH layout without running --install.
cp "$VM_BUSYBOX" "$stage/bin/busybox"
"$VM_BUSYBOX" --list-full | while read -r applet; do
    [ -e "$stage/$applet" ] || [ -L "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
done

install -m 0755 "$HERE/init.sh" "$stage/init"
# tally-rootless is the unprivileged user of the rootless tests (hack/rootless-user.sh on a host).
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\ntally-rootless:x:1000:1000::/nonexistent:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\ntally-rootless:x:1000:\n' >"$stage/etc/group"
echo tally-vm >"$stage/etc/hostname"

# Kernel modules. modules.dep (made by fetch.sh with busybox depmod) lists, for each module
# path, every module it needs, transitively. Module names are matched with '-' and '_' as the
# same character, as the kernel does. A requested module that the kernel has built in (listed
# in modules.builtin) is skipped: it needs no file.
mods_out=$stage/lib/modules/$KERNEL_RELEASE
mkdir -p "$mods_out"
norm() { tr '-' '_'; }
for m in $TALLY_VM_MODULES; do
    key=$(printf '%s' "$m" | norm)
    line=$(awk -F: -v k="$key" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko$/, "", n); gsub(/-/, "_", n);
                                   if (n == k) { print; exit } }' "$KERNEL_MODULES/modules.dep")
    if [ -z "$line" ]; then
        if sed 's#.*/##; s#\.ko$##' "$KERNEL_MODULES/modules.builtin" | norm | grep -qx "$key"; then
            continue
        fi
        vm_die "kernel $KERNEL_RELEASE has no module $m"
    fi
    for f in ${line%%:*} ${line#*:}; do
        mkdir -p "$mods_out/$(dirname "$f")"
        cp "$KERNEL_MODULES/$f" "$mods_out/$f"
    done
done
cp "$KERNEL_MODULES/modules.builtin" "$KERNEL_MODULES/modules.order" "$mods_out/" 2>/dev/null || true
# Index only what was copied, so the guest's modprobe sees a consistent set (-b: the tree
# under $stage instead of the host's /lib/modules).
"$VM_BUSYBOX" depmod -b "$stage" "$KERNEL_RELEASE"
# Loaded by /init at boot: the boot subset, less anything built in.
for m in $TALLY_VM_BOOT_MODULES; do
    key=$(printf '%s' "$m" | norm)
    if awk -F: '{ n = $1; sub(/.*\//, "", n); sub(/\.ko$/, "", n); gsub(/-/, "_", n); print n }' \
        "$mods_out/modules.dep" | grep -qx "$key"; then
        echo "$m"
    fi
done >"$stage/etc/tally-vm/boot-modules"

# The payload. -L follows symlinks, so PAYLOAD_DIR may simply link to binaries in target/.
cp -RL --preserve=mode,timestamps "$payload/." "$stage/payload/"
# The guest has a C library only when the payload brings one (payload/lib, hack/vm/guest-tools.sh):
# without it a dynamically linked executable would fail there with a confusing "not found".
# Catch it here, for the top-level files at least.
[ -e "$stage/payload/lib/ld-linux-x86-64.so.2" ] || for f in "$stage"/payload/*; do
    if [ -f "$f" ] && [ -x "$f" ] && LC_ALL=C ldd "$f" 2>/dev/null | grep -q '=>'; then
        vm_log "warning: payload/${f##*/} is dynamically linked and will not run in the guest" \
               "(build it with RUSTFLAGS='-C target-feature=+crt-static' --target x86_64-unknown-linux-gnu)"
    fi
done

# newc is the only cpio format the kernel reads. Sorted names put each directory before its
# contents; -R 0:0 makes everything root's whatever user builds it. gzip -1: the archive is
# built on every run and the kernel decompresses any level equally fast, so the host-side
# time matters more than the few MB saved.
mkdir -p "$(dirname "$out")"
# (busybox cpio reports "N blocks" on stderr: drop that line, keep any error.)
(cd "$stage" && find . | LC_ALL=C sort | "$VM_BUSYBOX" cpio -o -H newc -R 0:0 2> >(grep -v ' blocks$' >&2)) |
    gzip -1 >"$out.tmp"
mv "$out.tmp" "$out"
