#!/bin/bash
# Boots the cgroup v2 test VM once: fetches QEMU and the kernel if needed (fetch.sh), packs
# PAYLOAD_DIR into an initramfs (build-initramfs.sh), boots it under QEMU with a time limit,
# streams the console to stdout and to a log file, and exits with the payload's exit status.
#
# Usage: hack/vm/run.sh PAYLOAD_DIR [TIMEOUT_SECONDS [ARGS...]]
#   PAYLOAD_DIR      becomes /payload in the guest; /payload/run is executed (see docs/vm.md)
#   TIMEOUT_SECONDS  wall-clock limit for the whole VM, boot included (default 900); the payload
#                    itself gets this minus a margin for booting, so that normally the guest
#                    reports the overrun itself (status 124) before the host has to kill QEMU
#   ARGS             passed to /payload/run (kernel parameter tally.args: plain words only)
#
# Exit status: the payload's, read from the "TALLY-VM-RESULT: status=N" line (the guest itself
# reports 124 when the payload overran its limit, 127 when the payload has nothing to run).
# When there is no such line the run failed whatever happened, and run.sh says why:
#   124  QEMU did not finish within TIMEOUT_SECONDS (hang) and was killed
#   125  kernel panic, or QEMU exited without a result line
#   126  QEMU could not be started (see its message)
#   130  interrupted (Ctrl-C, SIGTERM): QEMU was stopped
#
# Environment (besides those in common.sh):
#   TALLY_VM_LOG     console log file (default $TALLY_VM_CACHE/console.log, overwritten per run)
#   TALLY_VM_MEM     guest memory in MiB (default 1024)
#   TALLY_VM_CPUS    guest CPUs (default 2)
#   TALLY_VM_DISK_MB size of the scratch virtio disk (default 128)
#   TALLY_VM_APPEND  extra kernel command line parameters
#   TALLY_VM_SHELL=1 interactive shell on the console after the payload (needs a terminal)
#   TALLY_VM_DEBUG=1 trace /init and print the guest's kernel log before poweroff
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 PAYLOAD_DIR [TIMEOUT_SECONDS [ARGS...]]" >&2
    exit 2
fi
payload=$1
limit=${2:-900}
shift $(( $# >= 2 ? 2 : 1 ))
case $limit in ''|*[!0-9]*) vm_die "TIMEOUT_SECONDS must be a number of seconds, not '$limit'" ;; esac
args="$*"
case $args in *'"'*) vm_die "ARGS cannot contain double quotes (they travel on the kernel command line)" ;; esac

# Boot takes ~2-3 s when the machine is idle; leave room for a loaded one.
margin=$(( limit >= 60 ? 20 : limit / 3 ))
guest_limit=$(( limit - margin ))

log=${TALLY_VM_LOG:-$TALLY_VM_CACHE/console.log}

"$HERE/fetch.sh"
# shellcheck source=/dev/null
. "$VM_KERNEL_DIR/env"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-vm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$HERE/build-initramfs.sh" "$tmp/initramfs.cpio.gz" "$payload"
# The scratch disk: sparse, new for every run, ext4 with user and project quotas (busybox's
# mke2fs cannot make those, so it is formatted here). The guest mounts it at /mnt/disk with
# usrquota,prjquota (init.sh); tests get its MAJ:MIN as TALLY_VM_DISK (for io.max) and its
# mount point as TALLY_VM_DISK_MNT.
truncate -s "${TALLY_VM_DISK_MB:-128}M" "$tmp/disk.raw"
mkfs.ext4 -q -F -O quota,project -E quotatype=usrquota:prjquota "$tmp/disk.raw" ||
    vm_die "mkfs.ext4 (e2fsprogs) could not format the scratch disk"

cmdline="console=ttyS0 panic=-1 quiet tally.timeout=$guest_limit"
[ -n "$args" ] && cmdline="$cmdline tally.args=\"$args\""
[ "${TALLY_VM_SHELL:-0}" = 1 ] && cmdline="$cmdline tally.shell=1"
[ "${TALLY_VM_DEBUG:-0}" = 1 ] && cmdline="$cmdline tally.debug=1"
cmdline="$cmdline ${TALLY_VM_APPEND:-}"
# x86 kernels keep 2048 bytes of command line and cut the rest without a word.
[ ${#cmdline} -lt 2000 ] || vm_die "the kernel command line would be ${#cmdline} bytes (max ~2000): pass fewer ARGS, or put them in a file in the payload"

# Why each option:
#   -accel tcg,thread=multi -cpu max   /dev/kvm on these machines is a nested paravirtual KVM
#                      that stock kernels fail on; TCG with one host thread per vCPU works
#   -L (three times)   firmware from the unpacked packages: bios-256k.bin (seabios),
#                      linuxboot_dma.bin (qemu-system-data), NIC ROMs (ipxe-qemu)
#   QEMU_MODULE_DIR    Debian builds the TCG accelerator as a loadable module; its compiled-in
#                      module path is /usr/lib/x86_64-linux-gnu/qemu, not our cache
#   -display none -serial stdio -monitor none
#                      console on ttyS0 = QEMU's stdout, no display. This is -nographic without
#                      its side effect on SeaBIOS, which then mirrors its screen to the serial
#                      port with escape sequences that clear the terminal and turn off its line
#                      wrapping; and without the monitor multiplexed onto stdio
#   -no-reboot         a reboot (which panic=-1 turns every kernel panic into) ends QEMU
#   -nic none          no network: nothing needs it, and no NIC means no iPXE ROM to load
#   -drive ... virtio  the scratch disk, cache=unsafe because its content does not matter
# shellcheck disable=SC2054  # the commas belong to QEMU's option syntax
qemu_args=(
    -accel tcg,thread=multi -cpu max
    -m "${TALLY_VM_MEM:-1024}" -smp "${TALLY_VM_CPUS:-2}"
    -display none -serial stdio -monitor none -no-reboot -nic none
    -L "$VM_QEMU_ROOT/usr/share/qemu" -L "$VM_QEMU_ROOT/usr/share/seabios" -L "$VM_QEMU_ROOT/usr/lib/ipxe/qemu"
    -kernel "$KERNEL_IMAGE" -initrd "$tmp/initramfs.cpio.gz" -append "$cmdline"
    -drive "file=$tmp/disk.raw,format=raw,if=virtio,cache=unsafe"
)
export QEMU_MODULE_DIR
QEMU_MODULE_DIR=$(echo "$VM_QEMU_ROOT"/usr/lib/*/qemu)

mkdir -p "$(dirname "$log")"
vm_log "booting $KERNEL_RELEASE with payload $payload (limit ${limit}s, payload ${guest_limit}s); console log: $log"
start=$(date +%s.%N)
if [ "${TALLY_VM_SHELL:-0}" = 1 ]; then
    # Interactive: QEMU keeps the terminal (--foreground, else timeout's own process group
    # would be stopped by SIGTTIN as soon as QEMU reads the terminal); Ctrl-C ends QEMU.
    set +e
    timeout --foreground -k 5 "$limit" "$VM_QEMU_BIN" "${qemu_args[@]}" 2>&1 | tee "$log"
    rcs=("${PIPESTATUS[@]}")
    set -e
    qemu_rc=${rcs[0]}
else
    # stdin from /dev/null: QEMU must neither read nor switch to raw mode the terminal it was
    # started from. In the background, because timeout moves QEMU into a process group of its
    # own that a Ctrl-C on the terminal does not reach, and bash would run a trap only after a
    # foreground pipeline ended: waiting here lets the trap end QEMU at once on Ctrl-C or on a
    # SIGTERM from make or CI, instead of leaving a VM running until the time limit.
    { rc=0
      timeout -k 5 "$limit" "$VM_QEMU_BIN" "${qemu_args[@]}" -pidfile "$tmp/qemu.pid" </dev/null 2>&1 || rc=$?
      echo "$rc" >"$tmp/qemu.rc"; } | tee "$log" &
    pipeline=$!
    interrupted=""
    trap 'interrupted=1; [ -s "$tmp/qemu.pid" ] && kill "$(cat "$tmp/qemu.pid")" 2>/dev/null' INT TERM HUP
    while kill -0 "$pipeline" 2>/dev/null; do wait "$pipeline" || true; done
    trap - INT TERM HUP
    if [ -n "$interrupted" ]; then
        vm_log "interrupted: QEMU stopped"
        exit 130
    fi
    qemu_rc=$(cat "$tmp/qemu.rc" 2>/dev/null || echo 1)
fi
elapsed=$(echo "$start $(date +%s.%N)" | awk '{ printf "%.1f", $2 - $1 }')

# The serial console ends lines with \r\n; a kernel message may share the line, so match the
# marker anywhere and take the last one.
result=$(tr -d '\r' <"$log" | sed -n 's/.*TALLY-VM-RESULT: status=\([0-9][0-9]*\).*/\1/p' | tail -n1)
if [ -n "$result" ]; then
    vm_log "payload exited with status $result (VM ran ${elapsed}s)"
    exit "$result"
fi
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    vm_log "FAILED: the VM did not power off within ${limit}s (hang) and was killed; no result line"
    exit 124
fi
if grep -q 'Kernel panic' "$log"; then
    vm_log "FAILED: kernel panic after ${elapsed}s; no result line"
    exit 125
fi
if [ "$qemu_rc" != 0 ]; then
    vm_log "FAILED: QEMU exited with status $qemu_rc after ${elapsed}s without a result line"
    exit 126
fi
vm_log "FAILED: the VM powered off after ${elapsed}s without printing a result line"
exit 125
