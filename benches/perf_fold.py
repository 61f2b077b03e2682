#!/usr/bin/env python3
"""Folds `perf script` output into flame-graph stacks, and sums self time by crate.

    perf script -i perf.data | benches/perf_fold.py folded.txt > by-crate.txt

The folded file has one line per distinct stack, root first, frames joined by `;`, then the
sample count: the input of flamegraph.pl and inferno-flamegraph. The table on stdout gives
each crate's share of the samples where its code was on top of the stack (self time),
which is how docs/benchmarks.md compares warden's profile with callgrind's.
"""

import collections
import re
import sys

# `  55d0c1a2b3c4 hyper::proto::h1::role::parse+0x1f (/path/warden)`
FRAME = re.compile(r"^\s*[0-9a-f]+\s+(.+?)\s+\((.*)\)\s*$")
OFFSET = re.compile(r"\+0x[0-9a-f]+$")
# Generic arguments (`Vec<u8>`, `poll<F>`): innermost first, as they nest.
GENERICS = re.compile(r"(?<=[A-Za-z0-9_}])<[^<>]*>")
# A Rust path's first segment, under generic brackets: `<hyper::...>` -> hyper.
CRATE = re.compile(r"^[<&\s]*(?:dyn\s+)?([A-Za-z_][A-Za-z0-9_]*)::")


def crate_of(symbol: str, dso: str) -> str:
    if dso.startswith("[kernel"):
        return "[kernel]"
    if symbol.startswith(("_rjem_", "je_")):
        return "jemalloc"
    m = CRATE.match(symbol)
    if m:
        return m.group(1)
    if "libc" in dso or symbol.startswith(("__memmove", "__memcpy", "__memset", "memcpy", "memmove")):
        return "libc"
    return symbol if symbol != "[unknown]" else "[unknown]"


def short(symbol: str) -> str:
    """The symbol without generic arguments, which make most of a Rust stack's length."""
    while True:
        shorter = GENERICS.sub("", symbol)
        if shorter == symbol:
            return symbol
        symbol = shorter


def samples(lines):
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        m = FRAME.match(line)
        if m:
            frames.append((OFFSET.sub("", m.group(1)), m.group(2)))
        # A header line (comm, pid, time, event) starts a sample: nothing to keep.
    if frames:
        yield frames


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    folded = collections.Counter()
    by_crate = collections.Counter()
    total = 0
    for frames in samples(sys.stdin):
        total += 1
        leaf_symbol, leaf_dso = frames[0]
        by_crate[crate_of(leaf_symbol, leaf_dso)] += 1
        folded[";".join(short(sym).replace(";", ":") for sym, _ in reversed(frames))] += 1
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        for stack, count in sorted(folded.items()):
            out.write(f"{stack} {count}\n")
    print(f"| self time by crate ({total} samples) | share |")
    print("|---|---:|")
    for crate, count in by_crate.most_common(20):
        print(f"| {crate} | {100.0 * count / max(total, 1):.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
