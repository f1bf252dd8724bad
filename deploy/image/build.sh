#!/usr/bin/env bash
# Builds the peerdns container image without a container engine: an OCI image layout (the
# format registries and engines take) written with umoci, holding the release binary, the C
# libraries it links (glibc, libgcc_s, libm), the image config (deploy/image/peerdns.toml,
# listening on 0.0.0.0) with the demo cluster, and a passwd entry for uid/gid 65532, which it
# runs as. deploy/Dockerfile builds the same contents for those with an engine.
#
#   bash deploy/image/build.sh                  # -> target/image/oci (tag: latest)
#   IMAGE_TAG=v0.1.0 bash deploy/image/build.sh
#   skopeo copy oci:target/image/oci:latest docker://ghcr.io/OWNER/peerdns:latest   # push
#   skopeo copy oci:target/image/oci:latest docker-archive:peerdns.tar:peerdns:latest
#
# Knobs: IMAGE_DIR (default target/image), IMAGE_TAG (latest), PEERDNS_BINARY (default
# target/release/peerdns, built with --locked when missing). Needs umoci (Debian package,
# installed when missing); runs as root (umoci unpacks with the image's ownership).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${IMAGE_DIR:-$root/target/image}
tag=${IMAGE_TAG:-latest}
binary=${PEERDNS_BINARY:-$root/target/release/peerdns}

if ! command -v umoci >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq umoci >/dev/null
fi
command -v umoci >/dev/null || { echo "umoci is missing" >&2; exit 1; }
if [ ! -x "$binary" ]; then
    cargo build --release --locked --bin peerdns --manifest-path "$root/Cargo.toml"
fi

layout="$out/oci"
bundle=$(mktemp -d)
trap 'rm -rf "$bundle"' EXIT
rm -rf "$layout"
mkdir -p "$out"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack --image "$layout:$tag" "$bundle/b" >/dev/null
rootfs="$bundle/b/rootfs"

# The binary (without its line tables when strip is at hand) and exactly the shared libraries
# it loads, at the paths it loads them from.
install -D -m 0755 "$binary" "$rootfs/usr/local/bin/peerdns"
if command -v strip >/dev/null; then strip "$rootfs/usr/local/bin/peerdns"; fi
ldd "$binary" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}' | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done

# The image's config and the demo cluster it serves when nothing is mounted.
install -D -m 0644 "$root/deploy/image/peerdns.toml" "$rootfs/etc/peerdns/peerdns.toml"
install -D -m 0644 "$root/config/cluster.yaml" "$rootfs/etc/peerdns/cluster.yaml"
# Kubernetes API servers outside the cluster are reached over TLS with the system's roots.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
# uid/gid 65532 ("nonroot", as in distroless images and deploy/deployment.yaml).
mkdir -p "$rootfs/etc" "$rootfs/home/nonroot" "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
chown 65532:65532 "$rootfs/home/nonroot"
chmod 1777 "$rootfs/tmp"

umoci repack --image "$layout:$tag" "$bundle/b"
umoci config --image "$layout:$tag" \
    --config.user 65532:65532 \
    --config.workingdir / \
    --config.entrypoint /usr/local/bin/peerdns \
    --config.cmd --config --config.cmd /etc/peerdns/peerdns.toml \
    --config.exposedports 5353/udp --config.exposedports 5353/tcp --config.exposedports 9153/tcp \
    --config.label "org.opencontainers.image.title=peerdns" \
    --config.label "org.opencontainers.image.licenses=MIT OR Apache-2.0" \
    --config.label "org.opencontainers.image.version=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
umoci gc --layout "$layout"
echo "image: $layout:$tag"
