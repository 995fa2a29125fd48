#!/bin/sh
# make-bundle.sh DIR [TALLY]: a bundle in DIR with a static busybox rootfs and a config.json
# from `tally spec` (terminal off, writable root), for the demo and the benchmarks.
set -eu
dir=$1
tally=${2:-tally}
"$(dirname "$0")/make-rootfs.sh" "$dir/rootfs"
rm -f "$dir/config.json"
"$tally" spec --bundle "$dir"
# The default spec wants a terminal and a read-only root; the demo and benchmarks want
# neither (no console socket, and no need to forbid writes).
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"readonly": true/"readonly": false/' "$dir/config.json"
