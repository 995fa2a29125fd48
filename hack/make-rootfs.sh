#!/bin/sh
# make-rootfs.sh DIR: a busybox root filesystem in DIR (static busybox, every applet linked,
# root and nobody in /etc/passwd and /etc/group), for bundles, images and --rootfs runs.
set -eu
dir=$1
[ -x /bin/busybox ] || { echo "make-rootfs: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dir/bin" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/run" "$dir/var/tmp"
cp /bin/busybox "$dir/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$dir/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$dir/etc/group"
