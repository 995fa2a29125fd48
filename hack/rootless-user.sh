#!/bin/sh
# rootless-user.sh: makes the unprivileged user the rootless tests run as (idempotent).
#   tally-rootless   a system user with no home and no login shell, its own group, and
#                    subordinate ranges in /etc/subuid and /etc/subgid (65536 ids from 200000),
#                    which newuidmap/newgidmap (package uidmap) let it map.
# Prints the user's uid. Needs root; the integration tests look the user up by name.
set -eu
user=tally-rootless
if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$user"
fi
for f in /etc/subuid /etc/subgid; do
    [ -e "$f" ] || : >"$f"
    grep -q "^$user:" "$f" || echo "$user:200000:65536" >>"$f"
done
id -u "$user"
