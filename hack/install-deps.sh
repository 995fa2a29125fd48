#!/bin/sh
# Installs what building and testing tally needs, from Debian's archive. Idempotent: packages
# already present are not fetched again, and apt-get update runs only when something is missing.
set -eu
# g++: libFuzzer (fuzz/, built by libfuzzer-sys) is C++. e2fsprogs: mkfs.ext4 formats the
# VM's scratch disk with project quotas (hack/vm/run.sh).
PKGS="g++ e2fsprogs libseccomp-dev pkg-config libelf-dev zlib1g-dev busybox-static hyperfine runc crun iproute2 util-linux procps time podman containerd uidmap"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
