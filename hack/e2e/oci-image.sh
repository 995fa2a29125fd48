#!/bin/sh
# oci-image.sh ROOTFS OUT.tar NAME: an OCI image layout tarball (one uncompressed layer) made
# from ROOTFS, for `ctr image import`, without a registry or any image tool. NAME is the image
# reference containerd gives it (io.containerd.image.name).
set -eu
rootfs=$1
out=$2
name=$3
work=$(mktemp -d /tmp/tally-oci.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/blobs/sha256"
digest() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# A reproducible layer: sorted names, numeric owners, fixed times.
${TAR:-tar} --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" .
layer=$(digest "$work/layer.tar")
mv "$work/layer.tar" "$work/blobs/sha256/$layer"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$layer" > "$work/config.json"
config=$(digest "$work/config.json")
config_size=$(size "$work/config.json")
mv "$work/config.json" "$work/blobs/sha256/$config"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config" "$config_size" "$layer" "$(size "$work/blobs/sha256/$layer")" > "$work/manifest.json"
manifest=$(digest "$work/manifest.json")
manifest_size=$(size "$work/manifest.json")
mv "$work/manifest.json" "$work/blobs/sha256/$manifest"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}]}' \
  "$manifest" "$manifest_size" "$name" > "$work/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"
${TAR:-tar} -C "$work" -cf "$out" oci-layout index.json blobs
