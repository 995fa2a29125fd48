#!/bin/sh
# cgroup-leaks.sh snapshot FILE | check FILE WHAT: the cgroup directories a run leaves on the
# host, seen from the host's own mount namespace.
#
# Why from outside: container tests and benchmarks run in hack/cgroup-sandbox.sh, which hides
# the memory hierarchy and (SANDBOX_NO_UNIFIED, for crun) the unified one. A cgroup made where
# a later command cannot see it (a container created with the unified mount and deleted
# without it) outlives every in-sandbox check; this one lists every hierarchy but memory,
# before and after, and names what is new.
#
# Never reads the v1 memory hierarchy: another manager owns it on the development host.
# Directories of a systemd host's own slices and scopes come and go with its services: only
# those whose name says tally (or a test id, cg-/tally-) are reported there.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 snapshot FILE | check FILE WHAT" >&2; exit 2; }
op=$1; file=$2

list() {
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 " " $4 }' /proc/self/mounts |
    while read -r dir options; do
      case ",$options," in *,memory,*) continue ;; esac
      case $dir in /sys/fs/cgroup*) ;; *) continue ;; esac
      find "$dir" -mindepth 1 -maxdepth 3 -type d 2>/dev/null
    done |
    awk '!/\.(slice|scope)(\/|$)/ || /tally|\/cg-/' | sort -u
}

case $op in
  snapshot)
    mkdir -p "$(dirname "$file")"
    list > "$file"
    ;;
  check)
    what=${3:-the run}
    [ -f "$file" ] || { echo "cgroup-leaks: no snapshot $file" >&2; exit 2; }
    left=$(list | comm -13 "$file" -)
    if [ -n "$left" ]; then
      echo "cgroup-leaks: $what left cgroup directories on the host:" >&2
      echo "$left" | sed 's/^/  /' >&2
      exit 1
    fi
    echo "== cgroup-leaks: $what left no cgroup directory on the host"
    ;;
  *) echo "usage: $0 snapshot FILE | check FILE WHAT" >&2; exit 2 ;;
esac
