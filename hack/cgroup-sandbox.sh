#!/bin/sh
# cgroup-sandbox.sh CMD [ARG...]: run CMD where the host's cgroup v1 memory hierarchy cannot
# be reached.
#
# Why: on the machines tally is developed and tested on, the v1 memory hierarchy already
# belongs to another manager (the machine's supervisor populates it). A runtime that creates
# or joins a memory cgroup there, as tally, runc and crun all do by default, would disturb it.
# So container tests and benchmarks run in a private mount namespace whose /sys/fs/cgroup is
# a fresh tmpfs holding every v1 hierarchy of the host except memory (plus name=systemd and
# the cgroup2 "unified" mount, when the host has them). The host's mount table is untouched;
# cgroups made inside are real cgroups of the host's hierarchies, so tests must remove them.
#
# On a pure cgroup v2 host (or inside the test VM) there is nothing to hide: CMD runs as is.
#
#   SANDBOX_NO_UNIFIED=1  leave out the cgroup2 "unified" mount (crun 1.8 refuses hybrid mode)
set -eu
[ $# -gt 0 ] || { echo "usage: $0 CMD [ARG...]" >&2; exit 2; }
# (busybox's stat names no cgroup2 file system: the controllers file tells v2 apart too.)
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] || [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  exec "$@"
fi
exec unshare --mount --propagation private sh -c '
  set -e
  # Which v1 controllers the host mounts, from its own mount table, memory excluded.
  ctrls=$(awk "\$3 == \"cgroup\" { n = split(\$4, o, \",\"); for (i = 1; i <= n; i++) print o[i] }" /proc/self/mounts |
          grep -E "^(cpu|cpuacct|cpuset|devices|freezer|blkio|pids|hugetlb|net_cls|net_prio|perf_event|rdma|misc)$" | sort -u)
  had_systemd=$(awk "\$3 == \"cgroup\" && \$4 ~ /name=systemd/" /proc/self/mounts)
  had_unified=$(awk "\$3 == \"cgroup2\" && \$2 == \"/sys/fs/cgroup/unified\"" /proc/self/mounts)
  umount -R /sys/fs/cgroup
  mount -t tmpfs -o mode=755,nosuid,nodev,noexec tally_cgroup_sandbox /sys/fs/cgroup
  for c in $ctrls; do
    mkdir -p /sys/fs/cgroup/$c
    # Co-mounted controllers (cpu,cpuacct) must be mounted together; retry with the pair.
    mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c 2>/dev/null || rmdir /sys/fs/cgroup/$c
  done
  if [ -n "$had_systemd" ]; then mkdir /sys/fs/cgroup/systemd; mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd; fi
  if [ -n "$had_unified" ] && [ -z "${SANDBOX_NO_UNIFIED:-}" ]; then mkdir /sys/fs/cgroup/unified; mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified; fi
  exec "$@"' tally-cgroup-sandbox "$@"
