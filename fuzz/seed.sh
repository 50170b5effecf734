#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the shared real data (../shared/data, or $TOCSIN_SHARED_DATA).
#
# Large real files are cut into small, still valid documents (a few packages or records each):
# libFuzzer mutates small inputs far faster, and every structure of the big files is still
# there. Seeds are added beside whatever a corpus already holds (a committed minimised corpus,
# or what earlier runs found); running this twice changes nothing.
#
# Usage: fuzz/seed.sh [TARGET...]   (default: every target)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
data="${TOCSIN_SHARED_DATA:-$repo/../shared/data}"
if [ ! -d "$data" ]; then
    echo "seed.sh: no shared data at $data; seeding only the built-in examples" >&2
    data=""
fi
command -v python3 >/dev/null || {
    echo "seed.sh: python3 is needed to cut the real files into seeds" >&2
    exit 1
}

exec python3 - "$here" "$repo" "$data" "$@" <<'PY'
import gzip, hashlib, io, json, os, re, sys, tarfile, zipfile

here, repo, data = sys.argv[1], sys.argv[2], sys.argv[3]
wanted = set(sys.argv[4:])
corpus = os.path.join(here, "corpus")
counts = {}

def seed(target, content, name=None):
    if wanted and target not in wanted:
        return
    if isinstance(content, str):
        content = content.encode()
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(content).hexdigest()
    path = os.path.join(d, name)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(content)
    counts[target] = counts.get(target, 0) + 1

def files(sub, exts):
    root = os.path.join(data, sub) if data else None
    if not root or not os.path.isdir(root):
        return []
    out = []
    for dp, _, fs in os.walk(root):
        for f in fs:
            if f.endswith(exts):
                out.append(os.path.join(dp, f))
    return sorted(out)

def spread(items, n):
    """n items spread evenly over the sorted list (deterministic)."""
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]

def read(p):
    with open(p, "rb") as f:
        return f.read()

# --- OSV records: JSON and YAML -----------------------------------------------------------
osv_json = []
for eco in ["crates.io", "go", "almalinux9", "debian"]:
    osv_json += spread(files("osv/" + eco, (".json",)), 30)
small_json = [p for p in osv_json if os.path.getsize(p) < 16384]
for p in small_json:
    seed("osv_json", read(p))
for p in spread(files("osv/pypi", (".yaml", ".yml")), 80):
    if os.path.getsize(p) < 16384:
        seed("osv_yaml", read(p))
seed("osv_json", '{"id":"X-1","withdrawn":"2024-01-01T00:00:00Z"}')
seed("osv_modified_list", b"\x01" + b"2024-07-30T14:43:15Z,GHSA-aaaa-bbbb-cccc\n2024-07-30T14:43:15Z,PYSEC-2024-1\n2024-01-01T00:00:00.5+02:00,RUSTSEC-2020-0001\r\n")
seed("osv_modified_list", b"\x00\n\n2023-04-03T00:00:00Z,DSA-5000-1\n")
seed("osv_modified_list", b"\x05" + b"<html>proxy error</html>")
seed("osv_yaml", "id: PYSEC-0\naffected:\n- package: {ecosystem: PyPI, name: x}\n  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: '0'\n    - fixed: 1.0\n")

# --- claircore Vulnerability arrays ----------------------------------------------------------
claircore = [
    {"id": "17", "updater": "debian/updater/buster", "name": "CVE-2021-3711", "description": "d",
     "issued": "2021-08-24T15:15:00Z", "links": "https://x", "severity": "High",
     "normalized_severity": "High",
     "package": {"id": "", "name": "openssl", "version": "", "kind": "source", "arch": "amd64"},
     "distribution": {"id": "4", "did": "debian", "name": "Debian GNU/Linux", "version": "10 (buster)",
                      "version_code_name": "buster", "version_id": "10", "arch": "", "cpe": "",
                      "pretty_name": "Debian GNU/Linux 10 (buster)"},
     "fixed_in_version": "1.1.1d-0+deb10u7", "arch_op": "equals"},
    {"name": "PYSEC-1", "package": {"name": "Django_Rest.framework"},
     "repository": {"id": "9", "name": "pypi", "uri": "https://pypi.org/simple", "cpe": ""},
     "fixed_in_version": "fixed=3.9.1&introduced=0"},
    {"name": "RHSA-2023:1", "updater": "rhel-vex", "normalized_severity": "Medium",
     "package": {"name": "bash", "kind": "binary", "module": "", "arch": "x86_64|aarch64"},
     "distribution": {"did": "rhel", "version_id": "8", "cpe": "cpe:/o:redhat:enterprise_linux:8"},
     "repository": {"name": "cpe:/o:redhat:enterprise_linux:8::baseos", "key": "rhel-cpe-repository",
                    "cpe": "cpe:/o:redhat:enterprise_linux:8::baseos"},
     "fixed_in_version": "0:4.4.20-4.el8_6", "arch_op": "pattern match"},
    {"name": "GHSA-x", "package": {"name": "github.com/a/b"}, "repository": {"name": "go"},
     "fixed_in_version": "", "range": {"[": {"kind": "semver", "v": [1, 2, 0, 0, 0, 0, 0, 0, 0, 0]},
                                       ")": {"kind": "semver", "v": [1, 4, 1, 0, 0, 0, 0, 0, 0, 0]}}},
    {"name": "ALPINE-1", "package": {"name": "musl"},
     "distribution": {"did": "alpine", "version_id": "3.18"}, "fixed_in_version": "1.2.4-r1"},
]
for i in range(len(claircore)):
    doc = json.dumps(claircore[i:] + claircore[:i], indent=1)
    seed("claircore_json", doc)
    seed("snapshot_json_array", doc)
for v in claircore:
    seed("claircore_json", json.dumps([v]))

# --- A Clair's answers to tocsin fronting it (update operations, update diffs, affected manifests)
seed("clair_answers", json.dumps({"debian/updater": [
    {"ref": "a4c8f1de-2b7b-4a5f-9d8c-0e6e2f0e4a11", "updater": "debian/updater",
     "fingerprint": "Tue, 01 Nov 2022 00:00:00 GMT", "date": "2022-11-01T00:00:00.123456Z", "kind": ""}],
    "osv/pypi": []}))
for i in range(len(claircore)):
    seed("clair_answers", json.dumps({
        "prev": {"ref": "00000000-0000-0000-0000-000000000000", "updater": "", "fingerprint": "", "date": "0001-01-01T00:00:00Z", "kind": ""},
        "cur": {"ref": "a4c8f1de-2b7b-4a5f-9d8c-0e6e2f0e4a11", "updater": "debian/updater", "fingerprint": "", "date": "2022-11-01T00:00:00Z", "kind": ""},
        "added": claircore[i:], "removed": claircore[:i] or None}))
seed("clair_answers", json.dumps({"vulnerabilities": {"3": claircore[0]},
    "vulnerable_manifests": {"sha256:" + "ab" * 32: ["3", "4"], "sha256:" + "cd" * 32: ["39"]}}))
seed("clair_answers", json.dumps({"vulnerable_manifests": {"sha256:" + "ab" * 32: ["41"]}}))

# --- OSV arrays ------------------------------------------------------------------------------
for k in range(0, len(small_json), 5):
    records = [json.loads(read(p)) for p in small_json[k:k + 5]]
    seed("snapshot_json_array", json.dumps(records))
seed("snapshot_json_array", "[]")

# --- archives: tar (the target gzips non-gzip input), tar.gz, zip -----------------------------
def tar_of(paths, prefix="crates/"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for p in paths:
            body = read(p)
            info = tarfile.TarInfo(prefix + os.path.basename(p))
            info.size = len(body)
            info.mtime = 0
            t.addfile(info, io.BytesIO(body))
    return buf.getvalue()

groups = [small_json[k:k + 3] for k in range(0, len(small_json), 12)]
for g in groups:
    raw = tar_of(g)
    seed("snapshot_targz", raw)
    seed("snapshot_targz", gzip.compress(raw, mtime=0))
# The first entries of real snapshot archives, with the real archives' headers.
for upd in ["crates.io", "almalinux9", "debian"]:
    arch = files("updates/" + upd, (".tar.gz",))
    if not arch:
        continue
    with tarfile.open(arch[0], "r:gz") as t:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as w:
            n = 0
            for m in t:
                if m.isfile() and m.size > 16384:
                    continue
                w.addfile(m, t.extractfile(m) if m.isfile() else None)
                n += 1
                if n >= 4:
                    break
        seed("snapshot_targz", out.getvalue())

for g in groups:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, p in enumerate(g):
            z.writestr(zipfile.ZipInfo("osv/" + os.path.basename(p)), read(p),
                       compress_type=zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED)
    seed("snapshot_zip", buf.getvalue())
    # The target's own list form: NAME\nCONTENT entries separated by \0\0\0.
    seed("snapshot_zip", b"\0\0\0".join(b"osv/" + os.path.basename(p).encode() + b"\n" + read(p) for p in g))
seed("snapshot_zip", b"dir/\n\0\0\0dir/a.json\n" + (read(small_json[0]) if small_json else b"{}") + b"\0\0\0README.md\nhello")

# --- inventories ----------------------------------------------------------------------------
for p in files("inventories/clair", (".json",)):
    doc = json.loads(read(p))
    seed("index_report", read(p) if os.path.getsize(p) < 8192 else json.dumps(doc))
    pkgs = list(doc.get("packages", {}).items())
    for k in range(0, min(len(pkgs), 40), 8):
        part = dict(doc)
        keep = dict(pkgs[k:k + 8])
        part["packages"] = keep
        part["environments"] = {i: e for i, e in doc.get("environments", {}).items() if i in keep}
        seed("index_report", json.dumps(part, indent=1))

def components(cs):
    return [c for c in cs if isinstance(c, dict)]

for p in files("inventories/cyclonedx", (".json",)):
    doc = json.loads(read(p))
    comps = components(doc.get("components", []))
    for k in range(0, min(len(comps), 60), 6):
        part = dict(doc)
        part["components"] = comps[k:k + 6]
        part.pop("dependencies", None)
        seed("cyclonedx", json.dumps(part, indent=1))
    for c in spread([c for c in comps if "purl" in c], 40):
        seed("purl", c["purl"])
seed("cyclonedx", '{"bomFormat":"CycloneDX","specVersion":"1.4","components":[{"type":"library","name":"x","purl":"pkg:npm/%40types/node@14.0.23","components":[{"purl":"pkg:deb/debian/libssl1.1@1.1.1n-0%2Bdeb10u3?arch=amd64&distro=debian-10"}]}]}')

spdx = {
    "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "x",
    "packages": [
        {"SPDXID": "SPDXRef-1", "name": "serde", "versionInfo": "1.0.0", "externalRefs": [
            {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
             "referenceLocator": "pkg:cargo/serde@1.0.0"}]},
        {"SPDXID": "SPDXRef-2", "name": "requests", "versionInfo": "2.31.0", "externalRefs": [
            {"referenceCategory": "PACKAGE_MANAGER", "referenceType": "purl",
             "referenceLocator": "pkg:pypi/requests@2.31.0"},
            {"referenceCategory": "SECURITY", "referenceType": "cpe23Type",
             "referenceLocator": "cpe:2.3:a:python:requests:2.31.0:*:*:*:*:*:*:*"}]},
        {"SPDXID": "SPDXRef-3", "name": "openssl", "versionInfo": "3.0.11-1~deb12u2", "externalRefs": [
            {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
             "referenceLocator": "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"}]},
        {"SPDXID": "SPDXRef-4", "name": "golang.org/x/net", "versionInfo": "v0.17.0", "externalRefs": [
            {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
             "referenceLocator": "pkg:golang/golang.org/x/net@v0.17.0"}]},
        {"SPDXID": "SPDXRef-5", "name": "nopurl"},
    ],
}
seed("spdx", json.dumps(spdx, indent=1))
# SPDX documents built from the CycloneDX examples' purls, a few packages each.
purls = []
for p in files("inventories/cyclonedx", (".json",)):
    purls += [c["purl"] for c in components(json.loads(read(p)).get("components", [])) if "purl" in c][:12]
for k in range(0, len(purls), 6):
    doc = dict(spdx, packages=[{"SPDXID": "SPDXRef-%d" % i, "name": "p", "externalRefs": [
        {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": u}]}
        for i, u in enumerate(purls[k:k + 6])])
    seed("spdx", json.dumps(doc))

hints = ["debian:12", "debian:buster", "ubuntu:22.04",
         "ID=debian\\nVERSION_ID=\"11\"\\nVERSION_CODENAME=bullseye"]
for p in files("inventories/dpkg", (".status",)):
    paras = read(p).decode("utf-8", "replace").split("\n\n")
    for k, start in enumerate(range(0, min(len(paras), 60), 6)):
        seed("dpkg_status", hints[k % len(hints)] + "\n" + "\n\n".join(paras[start:start + 6]) + "\n")

for p in files("inventories/cargo", (".lock",)):
    text = read(p).decode()
    head, *pkgs = re.split(r"(?m)^(?=\[\[package\]\])", text)
    for k in range(0, min(len(pkgs), 60), 10):
        seed("cargo_lock", head + "".join(pkgs[k:k + 10]))
seed("cargo_lock", '[[package]]\nname = "a"\nversion = "0.1.0"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "00"\ndependencies = ["b 1.0 (registry+https://github.com/rust-lang/crates.io-index)"]\n\n[[package]]\nname = "local"\nversion = "0.0.1"\n\n[metadata]\n"checksum b 1.0 (registry+https://github.com/rust-lang/crates.io-index)" = "ff"\n')

for p in files("inventories/pip", (".txt",)):
    lines = read(p).decode().splitlines()
    for k in range(0, len(lines), 15):
        seed("pip_list", "\n".join(lines[k:k + 15]) + "\n")
seed("pip_list", "# comment\n-r other.txt\nrequests[security]==2.31.0 ; python_version >= \"3.8\" \\\n    --hash=sha256:00\nflask>=2\nDjango_Rest.Framework===3.9.1\n-e git+https://x/y.git#egg=y\n")

# --- small grammars ---------------------------------------------------------------------------
for p in ["crates/tocsin/testdata/clair-v2.yaml", "crates/tocsin/testdata/clair-v4-notifier.yaml",
          "docs/config.example.yaml"]:
    full = os.path.join(repo, p)
    if os.path.exists(full):
        seed("config", read(full))
seed("config", "notifier:\n  poll_interval: 1.5h\n  webhook:\n    target: http://localhost/cb\n    callback: http://localhost/n\nauth:\n  psk:\n    key: c2VjcmV0\n    iss: [quay]\ntocsin:\n  max_body_size: 10MiB\n")

for d in ["0", "300ms", "1.5h", "2h45m", "1h15m30.918273645s", ".5s", "1us", "1\u00b5s", "1\u03bcs",
          "-0", "+5m", "9223372036854775807ns", "2562047h47m16.854775807s", "1d", "10", "-1.5h"]:
    seed("go_duration", d)

frames = [
    b"CONNECTED\nversion:1.2\nheart-beat:0,10000\nserver:RabbitMQ/3.12\n\n\0",
    b"RECEIPT\nreceipt-id:77\n\n\0\n\n",
    b"ERROR\nmessage:bad\\cthing\\n\ncontent-type:text/plain\ncontent-length:5\n\nab\0cd\0",
    b"MESSAGE\r\nsubscription:0\r\nmessage-id:a\\\\b\r\ndestination:/queue/x\r\n\r\nhello\0\r\n",
]
for i, f in enumerate(frames):
    seed("stomp_frame", bytes([i * 5]) + f)
    seed("stomp_frame", bytes([15]) + b"".join(frames))

seed("v2_page_token", bytes(range(10)))
seed("v2_page_token", b"AgEjRWeJq83vASNFZ4mrze8AAAAAAAAAAAAAAAAAAAAAxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
for t in ["00000000-0000-0000-0000-000000000001", "00000000000000000000000000000500",
          "{00000000-0000-0000-0000-0000000000ff}", "urn:uuid:00000000-0000-0000-0000-000000001000",
          "f47ac10b-58cc-4372-a567-0e02b2c3d479"]:
    seed("v4_next", t)

seed("jwt_psk", b"\0c2VjcmV0IGtleQ==")
seed("jwt_psk", b"\0c2VjcmV0IGtleQ")
seed("jwt_psk", b"\0_-8")
seed("jwt_psk", b"\1eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJjbGFpci1ub3RpZmllciJ9.AAAA")
claims = [
    {"iss": "clair-notifier", "iat": 1750000000, "nbf": 1749999940, "exp": 1750000060},
    {"iss": "clair-intraservice", "exp": 1750000010.5, "sub": "x"},
    {"iss": "quay", "exp": 1750000060},
    {"iss": "clair-notifier", "exp": 1e300},
    {"iss": "clair-notifier", "iat": 1750000100, "exp": 1750000200, "aud": ["a"]},
]
for c in claims:
    for mode in [2, 3, 4, 6]:
        seed("jwt_psk", bytes([mode]) + json.dumps(c).encode())

for t in sorted(counts):
    print(f"seed.sh: {t}: {counts[t]} seeds")
PY
