#!/usr/bin/env python3
"""Checks the size rules of the non-test code: no source file over 600 lines and no
function over 80 lines (tests/ and bench/ excluded, and *_test.cc files).

What is over today is listed in tests/size_baseline.txt with its size then: such a
function may shrink but not grow, such a file may grow by at most FILE_SLACK
lines (a fix in a giant file should not wait for its split), and nothing new may
cross a limit. So the rule holds for all new code while the giants are split
(issue 19), and the list only gets shorter. `--update` rewrites the baseline from the tree (use it
only to drop entries that were split, never to accept growth).

A function is found the way Google style writes one: a line that ends a
signature with `{` and the `}` that closes it at the indentation of the
signature's first line; its length counts every line from that first line to
the brace. Lambdas count as part of the function that holds them. Overloads of
one name in one file share an entry (the longest).
"""
import argparse
import os
import re
import sys

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
FILE_SLACK = 50
SOURCE_DIRS = ("server", "nvm", "rdma", "client", "common", "coord", "deploy")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = os.path.join(ROOT, "tests", "size_baseline.txt")

# The last line of a function signature: a closing parenthesis, qualifiers, an
# optional initializer list end, then the opening brace.
SIGNATURE_END = re.compile(
    r"^(\s*)(?!(?:if|for|while|switch|catch|do|else|return)\b)[^;{}]*\)"
    r"(?:\s*(?:const|override|noexcept|final|mutable|->\s*[\w:<>, *&]+))*"
    r"(?:\s*:\s*[^;{]*|\s*[\w)]\s*)?\s*\{\s*$"
)
CONTROL = re.compile(r"^\s*(?:(?:if|for|while|switch|catch|do|else|return)\b|\})")
# A trailing comment after a brace: `} // namespace`, `{  // why`.
TRAILING_COMMENT = re.compile(r'^(.*?[{}];?)\s*//[^"]*$')


def source_files():
    for d in SOURCE_DIRS:
        for dirpath, _, names in os.walk(os.path.join(ROOT, d)):
            for n in sorted(names):
                if not n.endswith((".cc", ".h")) or n.endswith("_test.cc"):
                    continue
                if n.endswith("_testing.cc") or n.endswith("_testing.h"):
                    continue
                yield os.path.relpath(os.path.join(dirpath, n), ROOT)


def functions(lines):
    """(first line number, name, length) of each function body in `lines`."""
    lines = [TRAILING_COMMENT.sub(r"\1", l) for l in lines]
    out = []
    i = 0
    while i < len(lines):
        m = SIGNATURE_END.match(lines[i])
        if not m or CONTROL.match(lines[i]):
            i += 1
            continue
        # The signature may start a few lines up (wrapped parameters, an
        # initializer list): its first line sets the indentation.
        start = i
        while start > 0 and lines[start - 1].strip() and not lines[start - 1].rstrip().endswith(
            (";", "}", "{", "*/", ":")
        ) and not lines[start - 1].lstrip().startswith(("//", "#")):
            start -= 1
        if CONTROL.match(lines[start]) or re.search(r"=\s*\[", lines[start]):
            i += 1  # a wrapped condition, or a lambda: not a function of its own
            continue
        indent = re.match(r"^\s*", lines[start]).group(0)
        name_m = re.search(r"([\w:~<>]+)\s*\(", " ".join(l.strip() for l in lines[start : i + 1]))
        name = name_m.group(1) if name_m else "?"
        closing = indent + "}"
        end = i + 1
        while end < len(lines) and not (
            lines[end].rstrip() in (closing, closing + ";") and lines[end].startswith(closing)
        ):
            end += 1
        if end >= len(lines):
            i += 1
            continue
        out.append((start + 1, name, end - start + 1))
        i = end + 1
    return out


def measure():
    sizes = {}
    for path in source_files():
        with open(os.path.join(ROOT, path), encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) > MAX_FILE_LINES:
            sizes["file " + path] = len(lines)
        for _, name, n in functions(lines):
            if n > MAX_FUNCTION_LINES:
                key = "function " + path + " " + name
                sizes[key] = max(n, sizes.get(key, 0))
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--update", action="store_true", help="rewrite tests/size_baseline.txt")
    args = ap.parse_args()
    sizes = measure()
    if args.update:
        with open(BASELINE, "w") as f:
            f.write("# Files over %d lines and functions over %d lines, with their size when\n"
                    "# this list was written: they may shrink, never grow (tests/check_sizes.py).\n"
                    % (MAX_FILE_LINES, MAX_FUNCTION_LINES))
            for k in sorted(sizes):
                f.write("%s %d\n" % (k, sizes[k]))
        print("check_sizes: wrote %d entries to %s" % (len(sizes), os.path.relpath(BASELINE, ROOT)))
        return 0
    baseline = {}
    with open(BASELINE) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, n = line.rsplit(" ", 1)
            baseline[key] = int(n)
    errors = []
    for k, n in sorted(baseline.items()):
        if k not in sizes:
            errors.append("%s: now within the limit (or renamed): run tests/check_sizes.py "
                          "--update to drop it from the baseline" % k)
        elif sizes[k] < n and not k.startswith("file "):
            errors.append("%s: shrank from %d to %d lines: run tests/check_sizes.py --update to "
                          "lock that in" % (k, n, sizes[k]))
    for k, n in sorted(sizes.items()):
        limit = MAX_FILE_LINES if k.startswith("file ") else MAX_FUNCTION_LINES
        if k not in baseline:
            errors.append("%s: %d lines, over the limit of %d" % (k, n, limit))
        elif n > baseline[k] + (FILE_SLACK if k.startswith("file ") else 0):
            errors.append("%s: %d lines, grew from %d (the limit is %d: split it)" %
                          (k, n, baseline[k], limit))
    for e in errors:
        print("check_sizes: " + e)
    print("check_sizes: %d files over %d lines and %d functions over %d lines remain from the "
          "baseline; %d new or grown" % (
              sum(1 for k in sizes if k.startswith("file ")), MAX_FILE_LINES,
              sum(1 for k in sizes if k.startswith("function ")), MAX_FUNCTION_LINES, len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
