#!/bin/sh
# /init of the tally test VM (copied into the initramfs by build-initramfs.sh; runs under the
# guest's static busybox as PID 1). It turns the bare kernel into a pure cgroup v2 machine, runs
# the payload once, reports its exit status on the console and powers off.
#
# The host side (run.sh) reads the console: everything printed here and by the payload ends up
# on ttyS0, and the one line that matters is the last thing printed before poweroff:
#     TALLY-VM-RESULT: status=<exit status of /payload/run>
# If that line is missing (kernel panic, init crashed, hang killed by the host) the run failed.
#
# Kernel command line parameters read here (dotted names, so the kernel keeps them out of init's
# argv and environment; run.sh sets them):
#     tally.args=WORDS      arguments for /payload/run, space separated, no quoting inside; use
#                           tally.args="a b c" for several
#     tally.timeout=SECS    time limit for /payload/run (0 = none); status 124 when it is hit
#     tally.shell=1         open an interactive shell on the console after the payload
#     tally.debug=1         trace this script and print the kernel log at the end
export PATH=/payload:/bin:/sbin:/usr/bin:/usr/sbin

# Messages carry the guest's uptime (once /proc is mounted) to show where boot time goes.
say() {
    up=""; [ -r /proc/uptime ] && read -r up _ </proc/uptime
    echo "tally-vm${up:+ [$up]}: $*"
}

# --- Stage 1: leave the initramfs ---------------------------------------------------------
# The kernel unpacks the initramfs into "rootfs", the root of the mount tree, which can never be
# unmounted or moved. pivot_root(2) therefore refuses to run while / is rootfs, and every
# container runtime pivot_roots into the container's root. So copy everything into a fresh tmpfs
# and switch_root into it (switch_root also empties rootfs to give the memory back). The same
# script then runs again from the new root, told apart by TALLY_VM_STAGE.
if [ "${TALLY_VM_STAGE:-1}" = 1 ]; then
    mount -t tmpfs -o mode=0755 tmpfs /newroot || exec sh   # no way on without it; at least a shell
    for e in /* /.[!.]*; do
        case $e in /newroot|/proc|/sys|/dev|'/.[!.]*') ;; *) cp -a "$e" /newroot/ ;; esac
    done
    mkdir -p /newroot/proc /newroot/sys /newroot/dev
    export TALLY_VM_STAGE=2
    exec switch_root /newroot /init
fi

# --- Stage 2: a normal-looking Linux system -----------------------------------------------
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# Where apparmor_parser loads profiles (the kernel runs AppArmor: Debian's default LSM).
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts -o mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr

# The payload's C library and the libraries of its Debian programs (hack/vm/guest-tools.sh), at
# the paths Debian's loader and binaries look in, so dynamically linked programs run natively.
if [ -e /payload/lib/ld-linux-x86-64.so.2 ]; then
    mkdir -p /lib /lib64
    ln -s /payload/lib /lib/x86_64-linux-gnu
    ln -s /payload/lib/ld-linux-x86-64.so.2 /lib64/ld-linux-x86-64.so.2
fi

cmdline=$(cat /proc/cmdline)
# param NAME: value of tally.NAME from the kernel command line ("" if absent), with or without
# double quotes around the value.
param() {
    v=$(printf '%s\n' "$cmdline" | sed -n "s/.*tally\.$1=\"\([^\"]*\)\".*/\1/p")
    [ -n "$v" ] || v=$(printf '%s\n' "$cmdline" | sed -n "s/.*tally\.$1=\([^ \"]*\).*/\1/p")
    printf '%s' "$v"
}
args=$(param args)
timeout=$(param timeout); timeout=${timeout:-0}
[ "$(param debug)" = 1 ] && set -x

# Pure cgroup v2, mounted the way systemd mounts it on current distributions (nsdelegate,
# memory_recursiveprot), so the runtime meets the same semantics as on a real host. Then
# delegate every controller the kernel has to the root's children: what cgroup.controllers
# lists is exactly what may be written to cgroup.subtree_control, one "+name" at a time so one
# refusal does not hide the others.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup ||
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
read -r controllers </sys/fs/cgroup/cgroup.controllers
for c in $controllers; do
    echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || say "warning: cannot enable controller $c"
done
# bpffs: not needed to attach the cgroup device filter, but present on any systemd host.
mount -t bpf bpf /sys/fs/bpf 2>/dev/null

# Kernel modules (overlay, virtio_pci, virtio_blk by default: the list is in /etc/tally-vm/
# boot-modules). Others in /lib/modules are loaded on demand through /sbin/modprobe.
# shellcheck disable=SC2046
modprobe -a $(cat /etc/tally-vm/boot-modules) || say "warning: modprobe failed"

# The scratch disk (run.sh attaches a raw image as virtio-blk): tests throttle it with io.max,
# which takes MAJ:MIN. The virtio driver probes asynchronously: wait up to 5 s for it.
disk=""
i=0
while [ $i -lt 50 ]; do
    for b in /sys/block/vd*; do [ -e "$b/dev" ] && disk=${b##*/} && break 2; done
    i=$((i + 1)); sleep 0.1
done
if [ -n "$disk" ]; then
    read -r TALLY_VM_DISK <"/sys/block/$disk/dev"
    export TALLY_VM_DISK TALLY_VM_DISK_DEV="/dev/$disk"
    # ext4 with the quota and project features (run.sh): the mount options turn enforcement on.
    mkdir -p /mnt/disk
    if mount -t ext4 -o usrquota,prjquota "/dev/$disk" /mnt/disk; then
        export TALLY_VM_DISK_MNT=/mnt/disk
    else
        say "warning: could not mount /dev/$disk with quotas"
    fi
else
    say "warning: no virtio disk found"
fi

hostname tally-vm
ip link set lo up 2>/dev/null
# systemd's limits (1024 soft, 524288 hard) instead of the kernel's 1024/4096 for PID 1.
# shellcheck disable=SC3045  # busybox ash has -H and -S
ulimit -Hn 524288 && ulimit -Sn 1024

export HOME=/root TMPDIR=/tmp TERM=dumb RUST_BACKTRACE=1
TALLY_VM_KERNEL=$(uname -r)
export TALLY_VM=1 TALLY_VM_KERNEL TALLY_VM_TIMEOUT="$timeout"
say "kernel $TALLY_VM_KERNEL up; cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control); disk ${TALLY_VM_DISK_DEV:-none}=${TALLY_VM_DISK:-}"

# --- Run the payload ------------------------------------------------------------------------
if [ -x /payload/run ]; then
    prog=/payload/run
elif [ -x /payload/integration-tests ]; then
    prog=/payload/integration-tests
else
    prog=""
fi
cd /payload || cd /
if [ -z "$prog" ]; then
    say "error: the payload has neither an executable /payload/run nor /payload/integration-tests"
    status=127
else
    say "running $prog $args (time limit: ${timeout}s)"
    # In the background so this shell can enforce the time limit. While it waits, PID 1 (this
    # shell) also reaps every orphan the payload leaves, e.g. container processes whose parent
    # runtime already exited, so none lingers as a zombie.
    # shellcheck disable=SC2086
    "$prog" $args &
    pid=$!
    if [ "$timeout" -gt 0 ]; then
        (sleep "$timeout"; : >/run/tally-vm-timed-out; kill -TERM "$pid"; sleep 10; kill -KILL "$pid") 2>/dev/null &
        watchdog=$!
    fi
    wait "$pid"
    status=$?
    [ -n "${watchdog:-}" ] && kill "$watchdog" 2>/dev/null
    if [ -e /run/tally-vm-timed-out ]; then
        say "error: $prog did not finish within ${timeout}s (killed; it exited with $status)"
        status=124
    fi
fi

if [ "$(param shell)" = 1 ]; then
    say "payload exited with $status; shell on the console, exit it to power off"
    setsid cttyhack sh -l
fi
if [ "$(param debug)" = 1 ]; then dmesg; fi

# Keep kernel messages from interleaving with the result line, then report and power off.
# (Were poweroff to fail, this script would end, PID 1 would exit, the kernel would panic and
# reboot, and QEMU, started with -no-reboot, would exit all the same.)
dmesg -n 1
say "powering off"
echo "TALLY-VM-RESULT: status=$status"
sync
poweroff -f
