#!/usr/bin/env python3
"""Fails when the workspace's rust-version is below a dependency's own rust-version.

The declared minimum must at least be what every dependency declares; only a build with
that toolchain could prove more, and the machine has one toolchain.
"""
import json
import subprocess
import sys


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
resolved = {node["id"] for node in meta["resolve"]["nodes"]}
members = set(meta["workspace_members"])
declared = {
    p["name"]: version(p["rust_version"])
    for p in meta["packages"]
    if p["id"] in members and p.get("rust_version")
}
if not declared:
    sys.exit("msrv: no workspace package declares rust-version")
ours = min(declared.values())
needed = max(
    (version(p["rust_version"]), p["name"])
    for p in meta["packages"]
    if p["id"] in resolved and p["id"] not in members and p.get("rust_version")
)
if needed[0] > ours:
    sys.exit(
        "msrv: rust-version {} is below {} {}".format(
            ".".join(map(str, ours)), needed[1], ".".join(map(str, needed[0]))
        )
    )
print("msrv: rust-version {} covers every dependency (highest: {} {})".format(
    ".".join(map(str, ours)), needed[1], ".".join(map(str, needed[0]))))
