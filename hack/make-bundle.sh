#!/bin/sh
# make-bundle.sh DIR [TALLY]: a bundle in DIR with a static busybox rootfs and a config.json
# from `tally spec` (terminal off, writable root), for the demo and the benchmarks.
set -eu
dir=$1
tally=${2:-tally}
[ -x /bin/busybox ] || { echo "make-bundle: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dir/rootfs/bin" "$dir/rootfs/proc" "$dir/rootfs/sys" "$dir/rootfs/dev" "$dir/rootfs/etc" "$dir/rootfs/tmp"
cp /bin/busybox "$dir/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$dir/rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$dir/rootfs/etc/group"
rm -f "$dir/config.json"
"$tally" spec --bundle "$dir"
# The default spec wants a terminal and a read-only root; the demo and benchmarks want
# neither (no console socket, and no need to forbid writes).
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"readonly": true/"readonly": false/' "$dir/config.json"
