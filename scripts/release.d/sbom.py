#!/usr/bin/env python3
"""A CycloneDX 1.5 SBOM (JSON) of what is compiled into one artifact: the crates cargo links into
PACKAGE for TARGET, with the features `cargo build -p PACKAGE --target TARGET` resolves (cargo tree),
following normal dependencies only: build scripts and proc macros (with what only they use) run at
build time and are not in the artifact; they are left out, and the SBOM says so in its properties.

  sbom.py PACKAGE TARGET ARTIFACT NAME VERSION COMMIT OUT.json [--container DIGEST]

Each component: name, version, purl (pkg:cargo/NAME@VERSION), the crate's SHA-256 from Cargo.lock
(crates.io) and its declared license. The artifact itself is metadata.component with its SHA-256
(with --container: an image whose manifest digest is DIGEST, holding the module as plugin.wasm).
"""
import hashlib
import json
import subprocess
import sys
import tomllib


def cargo(args):
    run = subprocess.run(["cargo", *args], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"sbom.py: cargo {' '.join(args)} failed:\n{run.stderr}")
    return run.stdout


def main(argv):
    args = argv[1:]
    container = None
    if "--container" in args:
        i = args.index("--container")
        container = args[i + 1]
        del args[i:i + 2]
    if len(args) != 7:
        sys.exit(__doc__)
    package, target, artifact, name, version, commit, out = args
    # Which crates, and which depends on which: `cargo tree -p` resolves features exactly as
    # `cargo build -p PACKAGE --target TARGET` does (cargo metadata would unify the whole workspace's).
    tree = cargo(["tree", "--locked", "-p", package, "--target", target, "-e", "normal",
                  "--prefix", "depth", "--no-dedupe", "-f", "{p}"])
    meta = json.loads(cargo(["metadata", "--format-version", "1", "--locked"]))
    with open("Cargo.lock", "rb") as f:
        lock = {(p["name"], p["version"]): p.get("checksum") for p in tomllib.load(f)["package"]}
    packages = {(p["name"], p["version"]): p for p in meta["packages"]}
    def proc_macro(pid):
        return any("proc-macro" in t["kind"] for t in packages[pid]["targets"])

    seen, edges, parents = set(), {}, []
    skip_below = None  # a proc macro runs in the compiler: neither it nor its dependencies are linked
    for line in tree.splitlines():
        digits = len(line) - len(line.lstrip("0123456789"))
        if digits == 0:
            continue
        depth = int(line[:digits])
        words = line[digits:].split()
        pid = (words[0], words[1].lstrip("v"))
        if skip_below is not None and depth > skip_below:
            continue
        skip_below = None
        if pid in packages and proc_macro(pid):
            skip_below = depth
            continue
        del parents[depth:]
        if parents:
            edges.setdefault(parents[-1], set()).add(pid)
        parents.append(pid)
        seen.add(pid)
        edges.setdefault(pid, set())
    roots = [pid for pid in seen if pid[0] == package]
    if len(roots) != 1 or any(pid not in packages for pid in seen):
        sys.exit(f"sbom.py: cargo tree -p {package} did not resolve to known packages")

    def ref(pid):
        p = packages[pid]
        return f"pkg:cargo/{p['name']}@{p['version']}"

    def component(pid):
        p = packages[pid]
        c = {"type": "library", "bom-ref": ref(pid), "name": p["name"], "version": p["version"],
             "purl": ref(pid)}
        checksum = lock.get((p["name"], p["version"]))
        if checksum:
            c["hashes"] = [{"alg": "SHA-256", "content": checksum}]
        if p.get("license"):
            c["licenses"] = [{"expression": p["license"]}]
        if p["source"] is None:
            c["description"] = "part of fapi-guard (this repository)"
        return c

    with open(artifact, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    main_ref = f"fapi-guard:{name}"
    components = [component(pid) for pid in sorted(seen, key=ref)]
    if container:
        subject = {"type": "container", "bom-ref": main_ref, "name": name, "version": version,
                   "hashes": [{"alg": "SHA-256", "content": container}],
                   "description": "OCI image (manifest digest) holding the plugin as plugin.wasm"}
        module_ref = "fapi-guard:plugin.wasm"
        components.insert(0, {"type": "application", "bom-ref": module_ref, "name": "plugin.wasm",
                              "version": version, "hashes": [{"alg": "SHA-256", "content": digest}]})
        dependencies = [{"ref": main_ref, "dependsOn": [module_ref]},
                        {"ref": module_ref, "dependsOn": [ref(roots[0])]}]
    else:
        subject = {"type": "application", "bom-ref": main_ref, "name": name, "version": version,
                   "hashes": [{"alg": "SHA-256", "content": digest}]}
        dependencies = [{"ref": main_ref, "dependsOn": [ref(roots[0])]}]
    dependencies += [{"ref": ref(pid), "dependsOn": sorted({ref(d) for d in edges[pid]})}
                     for pid in sorted(seen, key=ref)]
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:" + str(__import__("uuid").uuid5(__import__("uuid").NAMESPACE_URL,
                                                                    f"fapi-guard/{commit}/{name}/{digest}")),
        "version": 1,
        "metadata": {
            "component": subject,
            "properties": [
                {"name": "fapi-guard:commit", "value": commit},
                {"name": "fapi-guard:cargo-package", "value": package},
                {"name": "fapi-guard:target", "value": target},
                {"name": "fapi-guard:scope", "value": "crates linked into the artifact (normal dependencies, resolved features); build scripts, proc macros and what only they use are not listed"},
            ],
        },
        "components": components,
        "dependencies": dependencies,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(bom, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"{out}: {len(components)} components")


if __name__ == "__main__":
    main(sys.argv)
