#!/usr/bin/python3
"""redis-py against FaHA, with redis-server as the oracle.

What it tests: the way a Python application really talks to FaHA, through
Debian's redis-py 4.3.4 -- transaction pipelines (MULTI/EXEC as redis-py frames
them, exec-time and queue-time errors), WATCH optimistic locking (the classic
retry loop from several threads, the r.transaction() helper, a deterministic
WatchError), SCAN via scan_iter, and the plain string commands with redis-py's
own argument encoding and reply callbacks. Every scenario runs against a
faha-server and a redis-server 7.0 started here, once with redis-py's pure
Python parser and once with hiredis; each step's reply is checked against a
concrete expected value and FaHA's reply against Redis's.

Why: tests/command_table_test.cc and tests/multi_test.cc compare raw RESP
bytes; this checks that a real client library, its parsers and its helpers
(pipeline bookkeeping, WatchError, ExecAbortError, scan cursors) work on FaHA.

Run: FAHA_BIN_DIR=<dir with faha-server> /usr/bin/python3 tests/redis_py_test.py
(ctest -R redis_py_test does this). Exits non-zero on any mismatch.
"""
import fnmatch
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import redis
import redis.connection

ANY = object()      # expected value: do not check (still compared FaHA vs Redis)
NONDET = object()   # expected value: do not check, do not compare either
failures = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(name, proc, port, timeout=20.0):
    """Poll PING until the server answers; fail if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with status {proc.returncode} before it answered PING")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{name} did not answer PING on port {port} within {timeout} s")


def client(port, parser):
    pool = redis.ConnectionPool(host="127.0.0.1", port=port, parser_class=parser,
                                socket_timeout=30)
    return redis.Redis(connection_pool=pool)


def norm(x):
    """Make a reply comparable: exceptions become (type name, message)."""
    if isinstance(x, Exception):
        return (type(x).__name__, str(x))
    if isinstance(x, (list, tuple)):
        return [norm(v) for v in x]
    return x


def call(fn):
    try:
        return norm(fn())
    except redis.exceptions.RedisError as e:
        return norm(e)


def within(lo, hi):
    """Expected value matching any number in [lo, hi] (TTLs that tick)."""
    return lambda v: isinstance(v, (int, float)) and lo <= v <= hi


def matches(value, expected):
    if expected is ANY or expected is NONDET:
        return True
    if callable(expected):
        return expected(value)
    if isinstance(expected, list) and isinstance(value, list):  # may hold predicates
        return len(value) == len(expected) and all(map(matches, value, expected))
    return value == expected


# --- Scenarios. Each takes (r, new_client) and returns [(label, value, expected)].

def s_transaction_pipeline(r, new_client):
    out = []
    p = r.pipeline()  # transaction=True
    p.set("a", "1").incr("a").incrby("a", 5).get("a")
    p.mset({"b": "x", "c": "y"}).getset("b", "z").append("c", "yy")
    p.expire("c", 100).ttl("c").mget(["a", "b", "c", "nokey"]).delete("b").exists("a", "b", "c")
    out.append(("multi/exec", call(p.execute),
                [True, 2, 7, b"7", True, b"x", 3, True, 100, [b"7", b"z", b"yyy", None], 1, 2]))
    # Exec-time error: the other commands still run.
    p = r.pipeline()
    p.set("s", "abc").incr("s").set("t", "1").get("s")
    out.append(("exec-time error, raise_on_error=False", call(lambda: p.execute(raise_on_error=False)),
                [True, ("ResponseError", "value is not an integer or out of range"), True, b"abc"]))
    p = r.pipeline()
    p.set("t", "2").incr("s").set("u", "3")
    out.append(("exec-time error raises", call(p.execute), lambda v: v[0] == "ResponseError"))
    out.append(("...and applied the rest", call(lambda: r.mget("t", "u")), [b"2", b"3"]))
    # Queue-time error: EXECABORT, nothing applied. redis-py raises the queued
    # command's error (a ResponseError) in preference to the ExecAbortError.
    p = r.pipeline()
    p.set("q1", "1").execute_command("SET", "onlykey")
    p.set("q2", "2")
    out.append(("queue-time error", call(p.execute),
                lambda v: v[0] in ("ResponseError", "ExecAbortError") and "wrong number" in v[1]))
    out.append(("...applied nothing", call(lambda: r.exists("q1", "q2", "onlykey")), 0))
    # The pipeline's connection is usable afterwards; a non-transaction pipeline too.
    p = r.pipeline(transaction=False)
    p.set("n", "5").incr("s").decr("n")
    out.append(("plain pipeline", call(lambda: p.execute(raise_on_error=False)),
                [True, ("ResponseError", "value is not an integer or out of range"), 4]))
    p = r.pipeline()
    p.multi()
    p.set("d", "1")
    p.reset()  # DISCARD-equivalent: nothing sent
    out.append(("reset pipeline", call(lambda: r.exists("d")), 0))
    return out


def s_watch_locking(r, new_client, threads=4, per_thread=200):
    retries = [0] * threads

    def worker(i):
        c = new_client()
        with c.pipeline() as p:
            for _ in range(per_thread):
                while True:
                    try:
                        p.watch("counter")
                        v = int(p.get("counter") or 0)
                        p.multi()
                        p.set("counter", v + 1)
                        p.execute()
                        break
                    except redis.WatchError:
                        retries[i] += 1
        c.connection_pool.disconnect()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out = [("watch loop counter", call(lambda: r.get("counter")), str(threads * per_thread).encode()),
           ("watch loop retries", sum(retries), NONDET)]

    # The r.transaction() helper: retries func on WatchError by itself.
    def double(pipe):
        v = int(pipe.get("counter"))
        pipe.multi()
        pipe.set("counter", v * 2)
        pipe.get("counter")
    out.append(("r.transaction", call(lambda: r.transaction(double, "counter")),
                [True, str(threads * per_thread * 2).encode()]))
    out.append(("r.transaction value_from_callable",
                call(lambda: r.transaction(lambda pipe: int(pipe.get("counter")), "counter",
                                           value_from_callable=True)), threads * per_thread * 2))

    def helper_worker():
        c = new_client()
        for _ in range(50):
            c.transaction(lambda pipe: (lambda v: (pipe.multi(), pipe.set("h", v + 1)))(
                int(pipe.get("h") or 0)), "h")
        c.connection_pool.disconnect()
    ts = [threading.Thread(target=helper_worker) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.append(("r.transaction from 2 threads", call(lambda: r.get("h")), b"100"))
    return out


def s_watch_error(r, new_client):
    other = new_client()
    out = []

    def watched(key, meddle, value=b"mine"):
        """WATCH key, GET it, let meddle() run, then MULTI/SET/EXEC."""
        with r.pipeline() as p:
            p.watch(key)
            p.get(key)
            meddle(p)
            p.multi()
            p.set(key, value)
            return call(p.execute)
    r.set("w", "0")
    out.append(("other client changes key", watched("w", lambda p: other.set("w", "other")),
                ("WatchError", "Watched variable changed.")))
    out.append(("...its write stands", call(lambda: r.get("w")), b"other"))
    out.append(("other client writes same value", watched("w", lambda p: other.set("w", "other")),
                ("WatchError", "Watched variable changed.")))
    out.append(("other client creates key", watched("new", lambda p: other.set("new", "x")),
                ("WatchError", "Watched variable changed.")))
    out.append(("other client deletes key", watched("w", lambda p: other.delete("w")),
                ("WatchError", "Watched variable changed.")))
    out.append(("other client sets TTL", watched("new", lambda p: other.expire("new", 100)),
                ("WatchError", "Watched variable changed.")))
    out.append(("same connection writes key", watched("new", lambda p: p.set("new", "y")),
                ("WatchError", "Watched variable changed.")))
    out.append(("other client touches another key", watched("w", lambda p: other.set("zz", "1")),
                [True]))
    out.append(("...EXEC applied", call(lambda: r.get("w")), b"mine"))
    r.psetex("e", 50, "v")
    out.append(("watched key expires", watched("e", lambda p: time.sleep(0.2)),
                ("WatchError", "Watched variable changed.")))
    out.append(("unwatched before change", watched("w", lambda p: (p.unwatch(), other.set("w", "o"))),
                [True]))
    other.connection_pool.disconnect()
    return out


def s_scan(r, new_client):
    keys = {f"user:{i}": i for i in range(200)}
    keys.update({f"session:{i}": i for i in range(150)})
    keys.update({f"user:{i}:x": i for i in range(150)})
    r.mset(keys)
    out = []
    for pattern in (None, "user:*", "user:1?", "session:[0-4]*", "*:x", "user:1*:x", "nomatch*"):
        want = {k.encode() for k in keys if pattern is None or fnmatch.fnmatchcase(k, pattern)}
        for count in (None, 10, 1000):
            out.append((f"scan_iter(match={pattern!r}, count={count})",
                        set(r.scan_iter(match=pattern, count=count)), want))
    allk = {k.encode() for k in keys}
    out.append(("scan_iter(_type='string')", set(r.scan_iter(_type="string")), allk))
    out.append(("scan_iter(match='user:*', _type='string', count=50)",
                set(r.scan_iter(match="user:*", _type="string", count=50)),
                {k for k in allk if k.startswith(b"user:")}))
    out.append(("scan_iter(_type='list')", set(r.scan_iter(_type="list")), set()))
    out.append(("dbsize", r.dbsize(), 500))
    return out


def s_plain(r, new_client):
    E = lambda msg: ("ResponseError", msg)
    steps = [
        ("setex", lambda: r.setex("s1", 100, "v"), True),
        ("ttl after setex", lambda: r.ttl("s1"), 100),
        ("psetex", lambda: r.psetex("s2", 100000, "v"), True),
        ("pttl after psetex", lambda: r.pttl("s2"), within(95000, 100000)),
        ("set ex=0", lambda: r.set("s3", "v", ex=0), E("invalid expire time in 'set' command")),
        ("set get", lambda: r.set("s1", "w", get=True), b"v"),
        ("set keepttl", lambda: (r.setex("s5", 100, "a"), r.set("s5", "k", keepttl=True),
                                 r.ttl("s5")), [True, True, 100]),
        ("set without keepttl clears ttl", lambda: r.ttl("s1"), -1),
        ("set nx/xx", lambda: [r.set("s4", "1", xx=True), r.set("s4", "1", nx=True),
                               r.set("s4", "2", nx=True)], [None, True, None]),
        ("set getex", lambda: r.set("g", "val"), True),
        ("getex ex", lambda: (r.getex("g", ex=50), r.ttl("g")), [b"val", 50]),
        ("getex px", lambda: (r.getex("g", px=60000), r.pttl("g")), [b"val", within(55000, 60000)]),
        ("getex persist", lambda: (r.getex("g", persist=True), r.ttl("g")), [b"val", -1]),
        ("getex missing", lambda: r.getex("missing"), None),
        ("getdel", lambda: (r.getdel("g"), r.getdel("g"), r.exists("g")), [b"val", None, 0]),
        ("getset", lambda: (r.getset("gs", "1"), r.getset("gs", "2")), [None, b"1"]),
        ("setnx", lambda: (r.setnx("nx", "a"), r.setnx("nx", "b"), r.get("nx")), [True, False, b"a"]),
        ("incrbyfloat", lambda: (r.set("f", "10.5"), r.incrbyfloat("f", 0.1),
                                 r.incrbyfloat("f", -5), r.incrbyfloat("f", "5.0e3"), r.get("f")),
         [True, 10.6, 5.6, 5005.6, b"5005.60000000000000009"]),  # long double, as Redis
        ("incrbyfloat not a float", lambda: r.incrbyfloat("nx", 1), E("value is not a valid float")),
        ("incr/decr", lambda: (r.incr("i"), r.incrby("i", 10), r.decr("i"), r.decrby("i", 20)),
         [1, 11, 10, -10]),
        ("append", lambda: (r.append("ap", "Hello"), r.append("ap", " World")), [5, 11]),
        ("getrange", lambda: (r.getrange("ap", 0, 4), r.getrange("ap", -5, -1),
                              r.getrange("ap", 5, 2), r.getrange("missing", 0, -1)),
         [b"Hello", b"World", b"", b""]),
        ("setrange", lambda: (r.setrange("ap", 6, "Redis"), r.get("ap")), [11, b"Hello Redis"]),
        ("setrange pads", lambda: (r.setrange("sr", 5, "x"), r.get("sr")), [6, b"\0" * 5 + b"x"]),
        ("msetnx", lambda: (r.msetnx({"m1": "1", "m2": "2"}), r.msetnx({"m2": "x", "m3": "3"}),
                            r.exists("m3")), [True, False, 0]),
        ("strlen", lambda: (r.strlen("ap"), r.strlen("missing")), [11, 0]),
        ("exists", lambda: r.exists("m1", "m2", "m1", "missing"), 3),
        ("ttl/pttl missing and persistent", lambda: (r.ttl("missing"), r.pttl("m1")), [-2, -1]),
        ("expire xx without ttl", lambda: r.expire("m1", 100, xx=True), False),
        ("expire nx", lambda: r.expire("m1", 100, nx=True), True),
        ("expire nx again", lambda: r.pexpire("m1", 5000, nx=True), False),
        ("expire gt smaller", lambda: r.expire("m1", 50, gt=True), False),
        ("expire gt larger", lambda: (r.expire("m1", 200, gt=True), r.ttl("m1")), [True, 200]),
        ("expire lt", lambda: (r.expire("m1", 300, lt=True), r.expire("m1", 10, lt=True),
                               r.ttl("m1")), [False, True, 10]),
        ("expire xx with ttl", lambda: r.expire("m1", 20, xx=True), True),
        ("expire nx+xx", lambda: r.expire("m1", 20, nx=True, xx=True),
         E("NX and XX, GT or LT options at the same time are not compatible")),
        ("expire missing", lambda: r.expire("missing", 10), False),
        ("expire in the past deletes", lambda: (r.expire("m2", -1), r.exists("m2")), [True, 0]),
        ("type", lambda: (r.type("m1"), r.type("missing")), [b"string", b"none"]),
        ("dbsize", lambda: r.dbsize(), ANY),
        ("delete", lambda: r.delete("m1", "nx", "missing"), 2),
        ("mget", lambda: r.mget("s4", "missing", "i"), [b"1", None, b"-10"]),
        ("flushall", lambda: (r.flushall(), r.dbsize()), [True, 0]),
    ]
    return [(label, call(fn), want) for label, fn, want in steps]


# TODO(scripting): once FaHA has EVAL/EVALSHA, add scenarios here for
# redis.lock.Lock (r.lock(name).acquire/release/extend, which use Lua scripts)
# and r.register_script(...) (EVALSHA with NOSCRIPT fallback to EVAL).
SCENARIOS = [
    ("transaction pipeline", s_transaction_pipeline),
    ("WATCH optimistic locking", s_watch_locking),
    ("WatchError", s_watch_error),
    ("scan_iter", s_scan),
    ("plain commands", s_plain),
]


def run_scenario(name, fn, parser, ports):
    """Run fn on FaHA and on Redis; check expectations and compare the two."""
    results = {}
    for server, port in ports.items():
        r = client(port, parser)
        r.flushall()
        conn = r.connection_pool.get_connection("PING")
        assert isinstance(conn._parser, parser), conn._parser
        r.connection_pool.release(conn)
        results[server] = fn(r, lambda port=port: client(port, parser))
        r.connection_pool.disconnect()
    bad = 0
    tag = f"[{parser.__name__}] {name}"
    for (label, fv, want), (_, rv, _) in zip(results["faha"], results["redis"]):
        problems = []
        if want is not NONDET and fv != rv:
            problems.append("FaHA and Redis differ")
        if not matches(fv, want):
            problems.append("FaHA not as expected")
        if not matches(rv, want):
            problems.append("Redis not as expected (test bug?)")
        if problems:
            bad += 1
            exp = "" if want in (ANY, NONDET) or callable(want) else f"\n    expected: {want!r}"
            failures.append(f"{tag}: {label}: {'; '.join(problems)}\n    FaHA:  {fv!r}\n"
                            f"    Redis: {rv!r}{exp}")
    extra = "".join(f", {label} faha={fv} redis={rv}" for (label, fv, want), (_, rv, _)
                    in zip(results["faha"], results["redis"]) if want is NONDET)
    print(f"{'FAIL' if bad else 'ok  '} {tag}: {len(results['faha'])} checks, {bad} failed{extra}",
          flush=True)


def main():
    bin_dir = os.environ.get("FAHA_BIN_DIR", os.getcwd())
    faha_bin = os.path.join(bin_dir, "faha-server")
    if not os.access(faha_bin, os.X_OK):
        sys.exit(f"no executable faha-server in {bin_dir} (set FAHA_BIN_DIR)")
    if not redis.connection.HIREDIS_AVAILABLE:
        sys.exit("hiredis is not available to redis-py: install python3-hiredis")
    print(f"redis-py {redis.__version__}, faha-server from {bin_dir}", flush=True)
    tmp = tempfile.mkdtemp(prefix="redis_py_test.")
    procs = []
    try:
        fport, rport = free_port(), free_port()
        flog = open(os.path.join(tmp, "faha.log"), "wb")
        rlog = open(os.path.join(tmp, "redis.log"), "wb")
        procs.append(("faha-server", subprocess.Popen(
            [faha_bin, "--port", str(fport), "--metrics_port", "-1",
             "--data_dir", os.path.join(tmp, "faha")], stdout=flog, stderr=subprocess.STDOUT)))
        os.mkdir(os.path.join(tmp, "redis"))
        procs.append(("redis-server", subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", os.path.join(tmp, "redis")],
            stdout=rlog, stderr=subprocess.STDOUT)))
        wait_ready("faha-server", procs[0][1], fport)
        wait_ready("redis-server", procs[1][1], rport)
        ports = {"faha": fport, "redis": rport}
        for parser in (redis.connection.PythonParser, redis.connection.HiredisParser):
            for name, fn in SCENARIOS:
                run_scenario(name, fn, parser, ports)
        for name, proc in procs:
            if proc.poll() is not None:
                failures.append(f"{name} exited during the test (status {proc.returncode})")
    finally:
        for name, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if failures:
            print(f"logs kept in {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("\nMISMATCHES:\n" + "\n".join(failures))
        sys.exit(1)
    print("all scenarios passed")


if __name__ == "__main__":
    main()
