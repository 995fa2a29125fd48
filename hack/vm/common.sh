# shellcheck shell=bash disable=SC2034
# Settings shared by hack/vm/fetch.sh, build-initramfs.sh and run.sh. Sourced, not executed.
#
# Every knob is an environment variable with a default, so `make vm-test` needs none of them and
# CI or a developer can override one without editing a script:
#
#   TALLY_VM_CACHE         where downloaded packages and their unpacked trees live. Outside the
#                          source tree on purpose: ~100 MB that must survive `git clean` and
#                          `cargo clean`, and is shared by every checkout on the machine.
#   TALLY_VM_KERNEL_PKG    the Debian kernel package to boot. A meta package such as
#                          linux-image-cloud-amd64 is followed to the linux-image-<release>
#                          package it depends on. Default: bookworm's cloud kernel (6.1).
#   TALLY_VM_KERNEL_SUITE  empty (default) = use the host's apt sources. A suite name such as
#                          bookworm-backports = fetch the kernel from that suite through a
#                          private apt setup inside the cache (the host's apt sources and lists
#                          are never changed).
#   TALLY_VM_QEMU_SUITE    the same for QEMU. Default: bookworm-backports (QEMU 10), because
#                          bookworm's QEMU 7.2 hung once in ~100 boots and trips a TCG bug with
#                          kernels newer than 6.1 (cmpxchg16b; see docs/vm.md). Set it empty for
#                          the host's sources. Packages the suite lacks (ipxe-qemu) come from the
#                          host's sources.
#   TALLY_VM_MIRROR        the Debian mirror used with TALLY_VM_*_SUITE.
#   TALLY_VM_MODULES       kernel modules copied into the initramfs (with their dependencies).
#   TALLY_VM_BOOT_MODULES  the subset of those that /init loads at boot; the rest are loaded on
#                          demand (the kernel calls /sbin/modprobe, e.g. for `ip link add type
#                          veth` or `losetup`).

TALLY_VM_CACHE=${TALLY_VM_CACHE:-/var/cache/tally-vm}
TALLY_VM_KERNEL_PKG=${TALLY_VM_KERNEL_PKG:-linux-image-cloud-amd64}
TALLY_VM_KERNEL_SUITE=${TALLY_VM_KERNEL_SUITE:-}
TALLY_VM_QEMU_SUITE=${TALLY_VM_QEMU_SUITE-bookworm-backports}
TALLY_VM_MIRROR=${TALLY_VM_MIRROR:-http://deb.debian.org/debian}
# CRIU needs the socket diag modules (to dump sockets), nf_tables through nfnetlink (it probes
# and locks the network with nftables), nf_conntrack_netlink (it dumps a network namespace's
# connection tracking) and tun (its kernel feature check): loaded at boot, as CRIU probes for
# them before anything would load them on demand.
VM_CRIU_MODULES="nfnetlink nf_tables nf_conntrack_netlink unix_diag inet_diag tcp_diag udp_diag netlink_diag af_packet_diag tun"
TALLY_VM_MODULES=${TALLY_VM_MODULES:-overlay virtio_pci virtio_blk loop veth quota_v2 $VM_CRIU_MODULES}
TALLY_VM_BOOT_MODULES=${TALLY_VM_BOOT_MODULES:-overlay virtio_pci virtio_blk quota_v2 $VM_CRIU_MODULES}

# QEMU and its firmware. All five are needed: qemu-system-x86 has the binary, -common the TCG
# accelerator module (accel-tcg-x86_64.so is a loadable module in Debian's build), -data the
# option ROMs that boot a kernel directly (linuxboot_dma.bin), seabios the BIOS, ipxe-qemu the
# NIC boot ROMs (unused while the VM has no NIC, but QEMU looks for them when one is added).
VM_QEMU_PKGS="qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu"

# Shared libraries the unpacked qemu-system-x86_64 needs that a stock Debian 12 host lacks, as
# found with `ldd $VM_QEMU_BIN | grep 'not found'` for bookworm's QEMU 7.2 (backports' QEMU 10
# needs the same ones). fetch.sh installs these, then runs ldd again and maps any soname still
# missing to its package (Debian names libfoo.so.N's package libfooN or libfoo-N; the name is
# checked against the Depends of the QEMU packages), so the list cannot silently fall short.
VM_QEMU_LIBS="libcapstone4 libfdt1 libibverbs1 libpmem1 librdmacm1 libslirp0 libvdeplug2"

VM_DEBS=$TALLY_VM_CACHE/debs       # downloads in progress; emptied once unpacked
VM_QEMU_ROOT=$TALLY_VM_CACHE/qemu${TALLY_VM_QEMU_SUITE:+@$TALLY_VM_QEMU_SUITE}
VM_QEMU_BIN=$VM_QEMU_ROOT/usr/bin/qemu-system-x86_64
# One directory per requested kernel, so switching TALLY_VM_KERNEL_PKG back and forth re-uses
# both downloads. '/' and '=' can appear in an apt request (pkg/suite, pkg=version).
vm_kernel_key() {
    printf '%s%s' "$TALLY_VM_KERNEL_PKG" "${TALLY_VM_KERNEL_SUITE:+@$TALLY_VM_KERNEL_SUITE}" | tr '/=:' '___'
}
VM_KERNEL_DIR=$TALLY_VM_CACHE/kernel/$(vm_kernel_key)
# fetch.sh writes $VM_KERNEL_DIR/env with KERNEL_RELEASE, KERNEL_IMAGE and KERNEL_MODULES.

# Programs the tests run in the guest besides busybox, unpacked from their packages into
# $VM_GUEST_ROOT: apparmor_parser (package apparmor) loads the profiles of the AppArmor tests;
# criu (with the libraries of its that a stock host lacks) checkpoints and restores.
# hack/vm-test.sh copies each with its libraries (the host's C library among them).
VM_GUEST_PKGS="apparmor criu libnftables1 libprotobuf-c1 libnet1 libjansson4 libnftnl11 libmnl0"
VM_GUEST_ROOT=$TALLY_VM_CACHE/guest

# busybox-static's binary: the guest's only userland besides the payload.
VM_BUSYBOX=${TALLY_VM_BUSYBOX:-/bin/busybox}

vm_log() { printf 'tally-vm: %s\n' "$*" >&2; }
vm_die() { vm_log "error: $*"; exit 1; }
