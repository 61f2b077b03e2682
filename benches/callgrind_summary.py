#!/usr/bin/env python3
"""benches/callgrind_summary.py — per-function Ir of one callgrind dump.

Usage: callgrind_summary.py DUMP REQUESTS [TOP] [--callers FN_SUBSTRING ...]

Prints the total Ir, Ir per request, and the TOP (default 25) functions by
exclusive (self) and by inclusive Ir, each also per request.  With
--callers, also the callers of every function whose name contains one of the
substrings, with the Ir of those calls.

Written because callgrind_annotate 3.19 mis-attributes the dumps of a fat-LTO
Rust binary taken after `callgrind_control -z` (it charges everything to
__libc_start_main).  The parser follows the callgrind format: name
compression "(id) name", cost lines "pos cost" (positions may be relative:
+N, -N, *), and a "calls=" line whose next cost line is the inclusive cost of
that call (charged to the caller's inclusive cost, not its self cost).
Inclusive figures of recursive functions count the recursion more than once,
as callgrind_annotate does.
"""
import collections
import re
import sys


def main():
    args = sys.argv[1:]
    callers_of = []
    if "--callers" in args:
        i = args.index("--callers")
        callers_of = args[i + 1:]
        args = args[:i]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, reqs = args[0], int(args[1])
    top = int(args[2]) if len(args) > 2 else 25

    names = {}  # (kind, id) -> name
    obj_names = {}

    def resolve(kind, value):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", value)
        if not m:
            return value
        key = (kind, m.group(1))
        if m.group(2) is not None:
            names[key] = m.group(2)
        return names.get(key, value)

    self_cost = collections.Counter()
    call_cost = collections.Counter()
    edges = collections.Counter()  # (caller, callee) -> inclusive Ir of calls
    ncalls = collections.Counter()  # (caller, callee) -> number of calls
    fn = None
    ob = None
    cfn = None
    cob = None
    pending_call = False
    totals = None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            c0 = line[0]
            if c0.isdigit() or c0 in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call:
                    call_cost[fn] += cost
                    edges[(fn, cfn)] += cost
                    pending_call = False
                else:
                    self_cost[fn] += cost
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                ob = resolve("ob", value)
                obj_names[ob] = True
            elif key == "fn":
                fn = resolve("fn", value)
                cfn = None
            elif key == "cob":
                cob = resolve("ob", value)
            elif key == "cfn":
                cfn = resolve("fn", value)
            elif key in ("fl", "fi", "fe", "cfl", "cfi"):
                resolve("fl", value)
            elif key == "calls":
                pending_call = True
                ncalls[(fn, cfn)] += int(value.split()[0])
            elif line.startswith("totals:"):
                totals = int(line.split()[1])
            elif line.startswith("summary:") and totals is None:
                totals = int(line.split()[1])

    total_self = sum(self_cost.values())
    print("dump: %s" % path)
    print("total Ir: %d   requests: %d   Ir/request: %.0f   (sum of self cost: %d)"
          % (totals or 0, reqs, (totals or 0) / reqs, total_self))

    def short(name, width=110):
        return name if len(name) <= width else name[: width - 1] + "…"

    print("\n## top %d by exclusive (self) Ir" % top)
    print("%12s %7s %9s  %s" % ("Ir", "%", "Ir/req", "function"))
    for name, cost in self_cost.most_common(top):
        print("%12d %6.2f%% %9.0f  %s" % (cost, 100.0 * cost / total_self, cost / reqs, short(name)))

    incl = collections.Counter()
    for name in set(self_cost) | set(call_cost):
        incl[name] = self_cost[name] + call_cost[name]
    print("\n## top %d by inclusive Ir (recursion counted more than once)" % top)
    print("%12s %7s %9s  %s" % ("Ir", "%", "Ir/req", "function"))
    for name, cost in incl.most_common(top):
        print("%12d %6.1f%% %9.0f  %s" % (cost, 100.0 * cost / total_self, cost / reqs, short(name)))

    for sub in callers_of:
        print("\n## callers of functions matching %r (inclusive Ir of the calls)" % sub)
        rows = collections.Counter()
        for (caller, callee), cost in edges.items():
            if callee and sub in callee:
                rows[(caller, callee)] += cost
        print("%12s %9s %9s  %s" % ("Ir", "Ir/req", "calls/req", "caller -> callee"))
        for (caller, callee), cost in rows.most_common(12):
            print("%12d %9.0f %9.2f  %s  ->  %s" % (cost, cost / reqs, ncalls[(caller, callee)] / reqs,
                                                    short(caller, 90), short(callee, 50)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
