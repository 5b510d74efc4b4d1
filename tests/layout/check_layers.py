"""The layers of the code (README, "Layout"), checked on the compiled
objects: no file calls into a layer above its own, and no two files of
gateway/pipeline/ call each other in a circle.

usage: check_layers.py LAYER=OBJ;OBJ... ... (lowest layer first)
"""
import collections
import os
import subprocess
import sys


def symbols(obj):
    """(defined, undefined) global symbols of an object file."""
    out = subprocess.run(["nm", obj], capture_output=True, text=True,
                         check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBRV":
            defined.add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
    return defined, undefined


def name(obj):
    return os.path.basename(obj).split(".")[0]


def cycles(graph):
    """Every circle of the graph, each as a list of nodes."""
    found, seen = [], set()

    def walk(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                circle = path[path.index(nxt):]
                key = frozenset(circle)
                if key not in seen:
                    seen.add(key)
                    found.append(circle + [nxt])
            else:
                walk(nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def main(argv):
    layers = []
    for arg in argv:
        layer, _eq, objs = arg.partition("=")
        layers.append((layer, [o for o in objs.split(";") if o]))
    owner = {}                      # symbol -> (layer index, file)
    info = []
    for i, (layer, objs) in enumerate(layers):
        if not objs:
            sys.exit("no objects for layer %s" % layer)
        for obj in objs:
            defined, undefined = symbols(obj)
            for sym in defined:
                owner[sym] = (i, name(obj))
            info.append((i, layer, name(obj), undefined))
    problems = []
    graph = collections.defaultdict(set)
    for i, layer, fname, undefined in info:
        for sym in sorted(undefined):
            if sym not in owner:
                continue
            j, other = owner[sym]
            if j > i:
                problems.append("%s/%s calls %s in %s/%s, a layer above"
                                % (layer, fname, sym, layers[j][0], other))
            if layer == "pipeline" and j == i and other != fname:
                graph[fname].add(other)
    for circle in cycles(graph):
        problems.append("pipeline files call each other in a circle: %s"
                        % " -> ".join(circle))
    for p in problems:
        print(p)
    if problems:
        return 1
    print("%d layers, %d files: no call upwards, no circle in the pipeline"
          % (len(layers), len(info)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
