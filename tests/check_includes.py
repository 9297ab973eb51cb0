#!/usr/bin/env python3
"""Fails on an #include that runs against the allowed direction between rooms.

Every C++ file outside tests/ and bench/ belongs to a room: a top-level
directory (common, nvm, rdma, coord, client) or a room of the server
(server/ROOM). A room may include its own headers, the public client API
("faha/..."), system headers, and the rooms listed for it below; an entry
"room/file.h" allows that one header only (an interface the room implements).
The edges (docs/architecture.md, "Map of the code"):

  node -> net -> commands -> engine -> metrics
  node -> cluster -> replication -> engine -> nvm -> common
  replication and cluster implement commands/role.h (INFO, ROLE, refusals)

A room's own tests (*_test.cc, *_testing.*) wire rooms together and are free,
as tests/ and bench/ are. A file in an unknown directory fails too, so a new room must be given its
edges here. Run from anywhere: python3 tests/check_includes.py
"""
import os
import re
import subprocess
import sys

BASE = {"common"}
ALLOWED = {
    "common": BASE,
    "nvm": BASE | {"nvm"},
    "rdma": BASE | {"nvm", "rdma"},
    "coord": BASE | {"coord"},
    "client": BASE | {"rdma", "client"},
    "server/metrics": BASE | {"server/metrics"},
    "server/engine": BASE | {"nvm", "server/metrics", "server/engine"},
    "server/commands": BASE | {"nvm", "server/metrics", "server/engine", "server/commands"},
    "server/net": BASE
    | {"nvm", "rdma", "server/metrics", "server/engine", "server/commands", "server/net"},
    # Replication sees the engine through its two interfaces only.
    "server/replication": BASE
    | {"nvm", "rdma", "server/metrics", "server/engine/replica_log.h",
       "server/engine/replication_hook.h", "server/commands/role.h", "server/replication"},
    "server/cluster": BASE
    | {"nvm", "rdma", "coord", "server/metrics", "server/engine", "server/commands/role.h",
       "server/replication", "server/cluster"},
    "server/node": None,  # the composition root: may include every room
}
FREE = ("tests/", "bench/")  # tests and benchmarks may include anything
FREE_SUFFIX = ("_test.cc", "_testing.h", "_testing.cc")  # so may a room's own tests
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def room_of(path):
    """The room a repository path belongs to, or None if it is in none."""
    parts = path.split("/")
    if parts[0] == "server" and len(parts) > 2:
        return "server/" + parts[1]
    if parts[0] in ALLOWED and len(parts) > 1:
        return parts[0]
    return None


def target_of(header):
    """The room and the room-relative form of an included header."""
    if header.startswith("faha/"):
        return "faha", header
    return room_of(header), header


def check(root):
    files = subprocess.run(
        ["git", "-C", root, "ls-files", "*.cc", "*.h"], capture_output=True, text=True,
        check=True).stdout.split()
    errors = []
    for path in files:
        if path.startswith(FREE) or path.endswith(FREE_SUFFIX):
            continue
        room = room_of(path)
        if room is None:
            errors.append(f"{path}: not in any room (add its directory to tests/check_includes.py)")
            continue
        allowed = ALLOWED[room]
        with open(os.path.join(root, path), encoding="utf-8") as f:
            text = f.read()
        for m in INCLUDE.finditer(text):
            header = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            target, _ = target_of(header)
            if target == "faha":
                continue
            if target is None:
                errors.append(f'{path}:{line}: #include "{header}" is not a path from the '
                              "source root into a room")
                continue
            if allowed is None or target == room or target in allowed or header in allowed:
                continue
            errors.append(f'{path}:{line}: {room} may not include "{header}" ({target} is '
                          f"not below {room}; allowed: {', '.join(sorted(allowed))})")
    return errors, len(files)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    errors, n = check(root)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check_includes: {len(errors)} include(s) against the allowed direction",
              file=sys.stderr)
        return 1
    print(f"check_includes: {n} files, every #include runs the allowed way")
    return 0


if __name__ == "__main__":
    sys.exit(main())
