#!/usr/bin/env python3
"""Writes the plugin's OCI images as OCI archives (an OCI image layout in a tar), deterministically:
the same plugin.wasm, version and commit give the same bytes, so the same digests. No daemon, no base
image, no registry: the layout is written here (OCI image spec v1.1: image-layout.md, manifest.md,
config.md, descriptor.md).

  oci.py compat WASM VERSION COMMIT OUT.tar   the "compat" variant: FROM scratch, exactly one
      layer (application/vnd.oci.image.layer.v1.tar+gzip) holding plugin.wasm. Istio's and Envoy
      Gateway's image fetchers take it (extractOCIStandardImage).
  oci.py oci WASM VERSION COMMIT OUT.tar      the "oci" variant (solo-io wasm artifact spec): a
      runtime-config layer (application/vnd.module.wasm.config.v1+json) and the module itself
      (application/vnd.module.wasm.content.layer.v1+wasm), two layers as those fetchers require.

Prints the manifest digest (hex), which is what Istio's and Envoy Gateway's `sha256` pins an image by.
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def descriptor(media_type, data, annotations=None):
    d = {"mediaType": media_type, "digest": "sha256:" + sha(data), "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def tar_bytes(entries):
    """A tar of (name, bytes) files, ustar, root-owned, mtime 0, in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            else:
                info.size = len(data)
                info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return buf.getvalue()


def abi_of(wasm):
    for abi in (b"proxy_abi_version_0_2_1", b"proxy_abi_version_0_2_0", b"proxy_abi_version_0_1_0"):
        if abi in wasm:
            return abi.decode()
    sys.exit("oci.py: the module exports no proxy_abi_version_*: not a proxy-wasm plugin")


def image(variant, wasm, version, commit):
    """(blobs, manifest bytes) of one variant."""
    annotations = {
        "org.opencontainers.image.title": "fapi-guard",
        "org.opencontainers.image.description": "fapi-guard: FAPI 2.0 resource-server checks as a proxy-wasm plugin for Envoy",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    if variant == "compat":
        layer_tar = tar_bytes([("plugin.wasm", wasm)])
        layer = gzip.compress(layer_tar, compresslevel=9, mtime=0)
        config = canonical({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer_tar)]},
        })
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor(CONFIG, config),
            "layers": [descriptor(LAYER_TGZ, layer)],
            "annotations": annotations,
        }
        blobs = [config, layer]
    elif variant == "oci":
        runtime = canonical({"type": "envoy_proxy", "abi_version": abi_of(wasm), "config": {"root_ids": [""]}})
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor(WASM_CONFIG, runtime),
            "layers": [
                descriptor(WASM_CONFIG, runtime, {"org.opencontainers.image.title": "runtime-config.json"}),
                descriptor(WASM_LAYER, wasm, {"org.opencontainers.image.title": "plugin.wasm"}),
            ],
            "annotations": annotations,
        }
        blobs = [runtime, wasm]
    else:
        sys.exit(f"oci.py: unknown variant {variant!r} (compat or oci)")
    return blobs, canonical(manifest)


def main(argv):
    if len(argv) != 6:
        sys.exit(__doc__)
    variant, wasm_path, version, commit, out = argv[1:]
    with open(wasm_path, "rb") as f:
        wasm = f.read()
    if not wasm.startswith(b"\0asm"):
        sys.exit(f"oci.py: {wasm_path} is not a wasm module")
    blobs, manifest = image(variant, wasm, version, commit)
    ref = version if variant == "compat" else f"{version}-oci"
    index = canonical({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [dict(descriptor(MANIFEST, manifest), annotations={"org.opencontainers.image.ref.name": ref})],
    })
    entries = {"blobs/sha256/" + sha(b): b for b in blobs + [manifest]}
    files = [("oci-layout", canonical({"imageLayoutVersion": "1.0.0"})), ("index.json", index),
             ("blobs", None), ("blobs/sha256", None)] + sorted(entries.items())
    with open(out, "wb") as f:
        f.write(tar_bytes(files))
    print(sha(manifest))


if __name__ == "__main__":
    main(sys.argv)
