#!/usr/bin/env python3
"""Pushes the release's OCI archives to a registry with the OCI distribution API (blob uploads, then
the manifest under a tag), pulls them back by tag, and checks what Istio's and Envoy Gateway's image
fetchers need: the manifest digest is the released one (what `sha256` pins), the compat variant has
exactly one application/vnd.oci.image.layer.v1.tar+gzip layer holding plugin.wasm, the oci variant has
an application/vnd.module.wasm.content.layer.v1+wasm layer, and the module pulled back has the
released SHA-256. Every blob is checked against its digest.

  registry_roundtrip.py HOST:PORT DIST_DIR

The last line is `N passed, M failed`.
"""
import gzip
import hashlib
import http.client
import io
import json
import sys
import tarfile
import urllib.parse

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
REPO = "fapi-guard/fapi-guard"

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok    ' if ok else 'FAILED'} {name}{': ' + detail if detail and not ok else ''}")
    return ok


class Registry:
    def __init__(self, hostport):
        self.hostport = hostport

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.hostport, timeout=30)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def push_blob(self, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, _, _ = self.request("HEAD", f"/v2/{REPO}/blobs/{digest}")
        if status == 200:
            return digest
        status, headers, body = self.request("POST", f"/v2/{REPO}/blobs/uploads/")
        if status != 202:
            raise SystemExit(f"blob upload start: {status} {body[:200]!r}")
        location = headers["location"]
        url = urllib.parse.urlsplit(location)
        query = url.query + ("&" if url.query else "") + "digest=" + urllib.parse.quote(digest)
        status, _, body = self.request("PUT", f"{url.path}?{query}", body=data,
                                       headers={"Content-Type": "application/octet-stream",
                                                "Content-Length": str(len(data))})
        if status != 201:
            raise SystemExit(f"blob upload {digest}: {status} {body[:200]!r}")
        return digest

    def blob(self, digest):
        status, _, data = self.request("GET", f"/v2/{REPO}/blobs/{digest}")
        if status != 200:
            raise SystemExit(f"GET blob {digest}: {status}")
        return data


def layout(archive):
    """The blobs and the one manifest of an OCI archive."""
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    index = json.loads(files["index.json"])
    assert json.loads(files["oci-layout"])["imageLayoutVersion"] == "1.0.0"
    desc = index["manifests"][0]
    blobs = {n.split("/")[-1]: b for n, b in files.items() if n.startswith("blobs/sha256/")}
    return blobs, desc


def roundtrip(reg, dist, archive, tag, digest_file):
    blobs, desc = layout(f"{dist}/{archive}")
    manifest_hex = desc["digest"].split(":")[1]
    manifest = blobs.pop(manifest_hex)
    for hexd, data in sorted(blobs.items()):
        if hashlib.sha256(data).hexdigest() != hexd:
            raise SystemExit(f"{archive}: blob {hexd} does not match its digest")
        reg.push_blob(data)
    status, headers, body = reg.request("PUT", f"/v2/{REPO}/manifests/{tag}", body=manifest,
                                        headers={"Content-Type": desc["mediaType"]})
    check(f"{archive}: pushed as {REPO}:{tag}", status == 201, f"{status} {body[:300]!r}")
    # Pull back by tag, as a mesh would.
    status, headers, pulled = reg.request("GET", f"/v2/{REPO}/manifests/{tag}", headers={"Accept": MANIFEST})
    check(f"{archive}: pulled back by tag", status == 200, str(status))
    released = open(f"{dist}/{digest_file}").read().strip()
    got = hashlib.sha256(pulled).hexdigest()
    check(f"{archive}: manifest digest is the released {digest_file} ({released[:12]}...)",
          got == released and headers.get("docker-content-digest") == "sha256:" + released,
          f"body {got}, header {headers.get('docker-content-digest')}")
    check(f"{archive}: manifest media type {MANIFEST}", headers.get("content-type") == MANIFEST,
          headers.get("content-type", ""))
    m = json.loads(pulled)
    layers = []
    for d in m["layers"] + [m["config"]]:
        data = reg.blob(d["digest"])
        ok = "sha256:" + hashlib.sha256(data).hexdigest() == d["digest"] and len(data) == d["size"]
        check(f"{archive}: blob {d['mediaType']} matches its descriptor", ok)
        layers.append((d, data))
    return m, layers[:-1], layers[-1]


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    reg = Registry(argv[1])
    dist = argv[2]
    status, _, _ = reg.request("GET", "/v2/")
    check("registry answers /v2/", status == 200, str(status))
    wasm_sha = open(f"{dist}/fapi_guard.wasm.sha256").read().split()[0]
    with open(f"{dist}/fapi_guard.wasm", "rb") as f:
        check("dist/fapi_guard.wasm has its released SHA-256", hashlib.sha256(f.read()).hexdigest() == wasm_sha)

    # The compat variant (Istio, Envoy Gateway): one gzip tar layer with plugin.wasm, FROM scratch.
    m, layers, (cdesc, config) = roundtrip(reg, dist, "fapi_guard.oci.tar", "test", "fapi_guard.image.digest")
    check("compat: exactly one layer", len(layers) == 1, str(len(layers)))
    check(f"compat: the layer is {LAYER_TGZ}", layers[0][0]["mediaType"] == LAYER_TGZ, layers[0][0]["mediaType"])
    check(f"compat: the config is {CONFIG}", cdesc["mediaType"] == CONFIG, cdesc["mediaType"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layers[0][1]))) as tar:
        members = tar.getmembers()
        names = [x.name for x in members]
        check("compat: the layer holds exactly plugin.wasm", names == ["plugin.wasm"], str(names))
        wasm = tar.extractfile(members[0]).read() if members else b""
    check("compat: plugin.wasm pulled back has the released SHA-256",
          hashlib.sha256(wasm).hexdigest() == wasm_sha, hashlib.sha256(wasm).hexdigest())
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    check("compat: config rootfs.diff_ids names the uncompressed layer",
          diff_ids == ["sha256:" + hashlib.sha256(gzip.decompress(layers[0][1])).hexdigest()], str(diff_ids))

    # The oci variant: the module itself as a layer of the wasm media type.
    m, layers, (cdesc, config) = roundtrip(reg, dist, "fapi_guard-wasm-artifact.oci.tar", "test-oci",
                                           "fapi_guard-wasm-artifact.image.digest")
    types = [d["mediaType"] for d, _ in layers]
    check("oci: two layers, runtime config and module", types == [WASM_CONFIG, WASM_LAYER], str(types))
    module = [data for d, data in layers if d["mediaType"] == WASM_LAYER]
    check("oci: the module layer has the released SHA-256",
          len(module) == 1 and hashlib.sha256(module[0]).hexdigest() == wasm_sha)
    check("oci: runtime config says envoy_proxy", json.loads(config).get("type") == "envoy_proxy")

    # A tag that does not exist is refused (the pull above was real, not a cache).
    status, _, _ = reg.request("GET", f"/v2/{REPO}/manifests/nope", headers={"Accept": MANIFEST})
    check("an unknown tag is 404", status == 404, str(status))
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
