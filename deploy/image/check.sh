#!/usr/bin/env bash
# Proves the image deploy/image/build.sh wrote, without a container engine: reads its config
# (user 65532:65532, entrypoint, ports), unpacks its root filesystem, runs the binary from
# there (chroot, as uid 65532, in a network namespace of its own) with the image's own config,
# and asks it a DNS question over UDP and TCP on the address the config listens on. Fails
# loudly on the first difference.
#
#   bash deploy/image/check.sh                  # the image at target/image/oci:latest
#
# Knobs: IMAGE_DIR, IMAGE_TAG as for build.sh. Needs root (chroot, unshare), umoci, dig.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${IMAGE_DIR:-$root/target/image}
tag=${IMAGE_TAG:-latest}
layout="$out/oci"
fail() { echo "image check: $*" >&2; exit 1; }
[ -f "$layout/index.json" ] || fail "no image at $layout (run deploy/image/build.sh)"

# The image config, as a registry or an engine reads it.
python3 - "$layout" "$tag" <<'PY' || fail "the image config is not what it should be"
import json, sys
layout, tag = sys.argv[1], sys.argv[2]
def blob(digest):
    algorithm, hex_digest = digest.split(":")
    with open(f"{layout}/blobs/{algorithm}/{hex_digest}") as f:
        return json.load(f)
index = json.load(open(f"{layout}/index.json"))
[manifest_ref] = [m for m in index["manifests"]
                  if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
manifest = blob(manifest_ref["digest"])
config = blob(manifest["config"]["digest"])["config"]
checks = {
    "User": ("65532:65532", config.get("User")),
    "Entrypoint": (["/usr/local/bin/peerdns"], config.get("Entrypoint")),
    "Cmd": (["--config", "/etc/peerdns/peerdns.toml"], config.get("Cmd")),
    "ExposedPorts": ({"5353/udp", "5353/tcp", "9153/tcp"}, set(config.get("ExposedPorts", {}))),
}
bad = [f"{k}: want {w!r}, got {g!r}" for k, (w, g) in checks.items() if w != g]
print("\n".join(bad) or "image config: user 65532:65532, entrypoint, cmd and ports as built")
sys.exit(1 if bad else 0)
PY

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umoci unpack --image "$layout:$tag" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
[ -x "$rootfs/usr/local/bin/peerdns" ] || fail "no binary in the image"
grep -q '"0.0.0.0:5353"' "$rootfs/etc/peerdns/peerdns.toml" || fail "the image's config does not listen on 0.0.0.0"

# Run it from the image's root filesystem as 65532, in a network namespace of its own (so
# port 5353 is free), with the image's config, and ask it over UDP and TCP.
unshare --net bash -s "$rootfs" <<'SH' || fail "the image's binary did not answer"
set -euo pipefail
rootfs=$1
ip link set lo up
chroot --userspec=65532:65532 "$rootfs" /usr/local/bin/peerdns --config /etc/peerdns/peerdns.toml \
    > /tmp/peerdns-image.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    dig @127.0.0.1 -p 5353 +time=1 +tries=1 SOA cluster.local >/dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || { cat /tmp/peerdns-image.log >&2; exit 1; }
    sleep 0.1
done
uid=$(awk '/^Uid:/{print $2}' /proc/$pid/status)
[ "$uid" = 65532 ] || { echo "running as uid $uid, not 65532" >&2; exit 1; }
udp=$(dig @127.0.0.1 -p 5353 +short SRV kubia.default.svc.cluster.local)
tcp=$(dig @127.0.0.1 -p 5353 +tcp +short A kubia-0.kubia.default.svc.cluster.local)
echo "UDP SRV kubia:"; echo "$udp"
echo "TCP A kubia-0: $tcp"
echo "$udp" | grep -q 'kubia-0.kubia.default.svc.cluster.local' || { cat /tmp/peerdns-image.log >&2; exit 1; }
[ -n "$tcp" ] || { cat /tmp/peerdns-image.log >&2; exit 1; }
grep -q '0.0.0.0:5353' /tmp/peerdns-image.log || { echo "not listening on 0.0.0.0:5353" >&2; cat /tmp/peerdns-image.log >&2; exit 1; }
SH
echo "image check: the binary in $layout:$tag runs as 65532 from the image's files and answers on 0.0.0.0:5353"
