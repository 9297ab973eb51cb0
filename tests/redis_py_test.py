#!/usr/bin/python3
"""redis-py against FaHA, with redis-server as the oracle.

What: Debian's redis-py 4.3.4 driving a faha-server and a redis-server 7.0 that
this script starts: transaction pipelines (exec-time and queue-time errors),
WATCH optimistic locking (the retry loop from 4 threads, r.transaction(), when
WatchError is raised), scan_iter, the string commands with redis-py's own
argument encoding and reply callbacks, and scripting: redis.lock.Lock (its Lua
release/extend/reacquire scripts, mutual exclusion from 4 threads),
register_script (EVALSHA, NOSCRIPT then SCRIPT LOAD, scripts in pipelines),
errors raised in scripts, and `redis-cli --eval`. Every scenario runs once with
redis-py's pure-Python parser and once with hiredis; each reply is checked
against a concrete expected value and FaHA's against Redis's.
Why: command_table_test and multi_test compare raw RESP bytes; this checks that
a real client library, its parsers and its helpers work on FaHA.
Run: FAHA_BIN_DIR=<dir of faha-server> /usr/bin/python3 tests/redis_py_test.py
(ctest -R redis_py_test). Exits non-zero on any mismatch.
"""
import fnmatch
import hashlib
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

NONDET = object()  # expected value of a step that is neither checked nor compared
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
            raise RuntimeError(f"{name} exited ({proc.returncode}) before it answered PING")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not answer PING on port {port} within {timeout} s")


def client(port, parser):
    # redis.Redis() takes no parser_class in 4.3.4: it is a ConnectionPool argument.
    pool = redis.ConnectionPool(host="127.0.0.1", port=port, parser_class=parser,
                                socket_timeout=30)
    return redis.Redis(connection_pool=pool)


def run_threads(target, n):
    ts = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def norm(x):
    """Make a reply comparable: exceptions become (type name, message)."""
    if isinstance(x, Exception):
        return (type(x).__name__, str(x))
    return [norm(v) for v in x] if isinstance(x, (list, tuple)) else x


def call(fn):
    try:
        return norm(fn())
    except redis.exceptions.RedisError as e:
        return norm(e)


def within(lo, hi):
    """Expected value matching any number in [lo, hi] (TTLs that tick)."""
    return lambda v: isinstance(v, (int, float)) and lo <= v <= hi


def matches(value, expected):
    if expected is NONDET:
        return True
    if callable(expected):
        return expected(value)
    if isinstance(expected, list) and isinstance(value, list):  # may hold predicates
        return len(value) == len(expected) and all(map(matches, value, expected))
    return value == expected


def mask(value, expected):
    """Blank the parts a predicate checks (ticking TTLs) before comparing servers."""
    if callable(expected):
        return "<checked by range>"
    if isinstance(expected, list) and isinstance(value, list) and len(value) == len(expected):
        return [mask(v, e) for v, e in zip(value, expected)]
    return value


# --- Scenarios. Each takes (r, new_client) and returns [(label, value, expected)].
NOT_INT = ("ResponseError", "value is not an integer or out of range")


def s_transaction_pipeline(r, new_client):
    out = []
    p = r.pipeline()  # transaction=True: MULTI ... EXEC
    p.set("a", "1").incr("a").incrby("a", 5).get("a")
    p.mset({"b": "x", "c": "y"}).getset("b", "z").append("c", "yy")
    p.expire("c", 100).ttl("c").mget(["a", "b", "c", "nokey"]).delete("b").exists("a", "b", "c")
    out.append(("multi/exec", call(p.execute),
                [True, 2, 7, b"7", True, b"x", 3, True, 100, [b"7", b"z", b"yyy", None], 1, 2]))
    # Exec-time error: the other commands still run.
    p = r.pipeline()
    p.set("s", "abc").incr("s").set("t", "1").get("s")
    out.append(("exec-time error, raise_on_error=False",
                call(lambda: p.execute(raise_on_error=False)), [True, NOT_INT, True, b"abc"]))
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
    # The pooled connection is usable afterwards; a non-transaction pipeline.
    p = r.pipeline(transaction=False)
    p.set("n", "5").incr("s").decr("n")
    out.append(("plain pipeline", call(lambda: p.execute(raise_on_error=False)),
                [True, NOT_INT, 4]))
    return out


def s_watch_locking(r, new_client, threads=4, per_thread=200):
    retries = [0] * threads

    def worker(i):  # the classic optimistic-locking loop, one client per thread
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
    run_threads(worker, threads)
    total = threads * per_thread
    out = [("watch loop counter", call(lambda: r.get("counter")), str(total).encode()),
           ("watch loop retries", sum(retries), NONDET)]

    # r.transaction(func, *keys): WATCH keys, run func, retry it on WatchError.
    def double(pipe):
        v = int(pipe.get("counter"))
        pipe.multi()
        pipe.set("counter", v * 2)
        pipe.get("counter")
    out.append(("r.transaction", call(lambda: r.transaction(double, "counter")),
                [True, str(total * 2).encode()]))
    out.append(("r.transaction value_from_callable",
                call(lambda: r.transaction(lambda pipe: int(pipe.get("counter")), "counter",
                                           value_from_callable=True)), total * 2))

    def increment_h(pipe):
        v = int(pipe.get("h") or 0)
        pipe.multi()
        pipe.set("h", v + 1)

    def helper_worker(_):
        c = new_client()
        for _ in range(50):
            c.transaction(increment_h, "h")
        c.connection_pool.disconnect()
    run_threads(helper_worker, 2)
    out.append(("r.transaction from 2 threads", call(lambda: r.get("h")), b"100"))
    return out


def s_watch_error(r, new_client):
    """WATCH key, GET it, let meddle() run (single-threaded), then MULTI/SET/EXEC."""
    other = new_client()

    def watched(key, meddle):
        with r.pipeline() as p:
            p.watch(key)
            p.get(key)
            meddle(p)
            p.multi()
            p.set(key, "mine")
            return p.execute()
    aborted = ("WatchError", "Watched variable changed.")
    r.set("w", "0")
    r.psetex("e", 50, "v")
    steps = [
        ("other client changes key", lambda: watched("w", lambda p: other.set("w", "other")), aborted),
        ("...its write stands", lambda: r.get("w"), b"other"),
        ("other client writes same value",
         lambda: watched("w", lambda p: other.set("w", "other")), aborted),
        ("other client creates key", lambda: watched("new", lambda p: other.set("new", "x")), aborted),
        ("other client deletes key", lambda: watched("w", lambda p: other.delete("w")), aborted),
        ("other client sets TTL", lambda: watched("new", lambda p: other.expire("new", 100)), aborted),
        ("same connection writes key", lambda: watched("new", lambda p: p.set("new", "y")), aborted),
        ("other client writes another key",
         lambda: watched("w", lambda p: other.set("zz", "1")), [True]),
        ("...EXEC applied", lambda: r.get("w"), b"mine"),
        ("watched key expires (50 ms TTL)", lambda: watched("e", lambda p: time.sleep(0.2)), aborted),
        ("UNWATCH before change",
         lambda: watched("w", lambda p: (p.unwatch(), other.set("w", "o"))), [True]),
    ]
    out = [(label, call(fn), want) for label, fn, want in steps]
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
    return out + [
        ("scan_iter(_type='string')", set(r.scan_iter(_type="string")), allk),
        ("scan_iter(match='user:*', _type='string', count=50)",
         set(r.scan_iter(match="user:*", _type="string", count=50)),
         {k for k in allk if k.startswith(b"user:")}),
        ("scan_iter(_type='list')", set(r.scan_iter(_type="list")), set()),
        ("dbsize", r.dbsize(), 500)]


def s_plain(r, new_client):
    E = lambda msg: ("ResponseError", msg)  # noqa: E731
    steps = [
        ("setex, ttl", lambda: (r.setex("s1", 100, "v"), r.ttl("s1")), [True, 100]),
        ("psetex, pttl", lambda: (r.psetex("s2", 100000, "v"), r.pttl("s2")),
         [True, within(95000, 100000)]),
        ("set ex=0", lambda: r.set("s3", "v", ex=0), E("invalid expire time in 'set' command")),
        ("set get", lambda: r.set("s1", "w", get=True), b"v"),
        ("set without keepttl clears ttl", lambda: r.ttl("s1"), -1),
        ("set keepttl", lambda: (r.setex("s5", 100, "a"), r.set("s5", "k", keepttl=True),
                                 r.ttl("s5")), [True, True, 100]),
        ("set nx/xx", lambda: [r.set("s4", "1", xx=True), r.set("s4", "1", nx=True),
                               r.set("s4", "2", nx=True)], [None, True, None]),
        ("getex ex", lambda: (r.set("g", "val"), r.getex("g", ex=50), r.ttl("g")), [True, b"val", 50]),
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
        ("expire xx/nx", lambda: (r.expire("m1", 100, xx=True), r.expire("m1", 100, nx=True),
                                  r.pexpire("m1", 5000, nx=True)), [False, True, False]),
        ("expire gt", lambda: (r.expire("m1", 50, gt=True), r.expire("m1", 200, gt=True),
                               r.ttl("m1")), [False, True, 200]),
        ("expire lt", lambda: (r.expire("m1", 300, lt=True), r.expire("m1", 10, lt=True),
                               r.ttl("m1")), [False, True, 10]),
        ("expire xx with ttl", lambda: r.expire("m1", 20, xx=True), True),
        ("expire nx+xx", lambda: r.expire("m1", 20, nx=True, xx=True),
         E("NX and XX, GT or LT options at the same time are not compatible")),
        ("expire missing", lambda: r.expire("missing", 10), False),
        ("expire in the past deletes", lambda: (r.expire("m2", -1), r.exists("m2")), [True, 0]),
        ("type, dbsize", lambda: (r.type("m1"), r.type("missing"), r.dbsize()),
         [b"string", b"none", 11]),
        ("delete", lambda: r.delete("m1", "nx", "missing"), 2),
        ("mget", lambda: r.mget("s4", "missing", "i"), [b"1", None, b"-10"]),
        ("flushall", lambda: (r.flushall(), r.dbsize()), [True, 0]),
    ]
    return [(label, call(fn), want) for label, fn, want in steps]


def sha1(text):
    return hashlib.sha1(text.encode()).hexdigest()


def in_script(msg, script, line=1):
    """A redis.call error as EVAL reports it: Redis appends the script's SHA-1 and line."""
    return ("ResponseError", f"{msg} script: {sha1(script)}, on @user_script:{line}.")


def s_lock(r, new_client):
    """redis.lock.Lock: SET NX PX to acquire, Lua scripts (EVALSHA) to release/extend/reacquire."""
    not_owned = lambda what: ("LockNotOwnedError", f"Cannot {what} a lock that's no longer owned")  # noqa: E731
    lk = r.lock("lk", timeout=10, blocking_timeout=1)
    other = r.lock("lk", timeout=10, blocking_timeout=0.2)

    def release_as(lock, token):  # a client that thinks it holds the lock, but does not
        lock.local.token = token
        lock.release()

    def with_block():
        with r.lock("wb", timeout=5) as held:
            inside = [held.owned(), r.exists("wb")]
        return inside + [r.exists("wb")]
    short, stale, taker = (r.lock("ex", timeout=0.1), r.lock("ex2", timeout=0.1),
                           r.lock("ex2", timeout=10))
    steps = [
        ("acquire", lk.acquire, True),
        ("owned, locked", lambda: (lk.owned(), lk.locked()), [True, True]),
        ("pttl after acquire", lambda: r.pttl("lk"), within(9000, 10000)),
        ("extend(5) adds to the ttl", lambda: (lk.extend(5), r.pttl("lk")),
         [True, within(14000, 15000)]),
        ("extend(3, replace_ttl=True)", lambda: (lk.extend(3, replace_ttl=True), r.pttl("lk")),
         [True, within(2000, 3000)]),
        ("reacquire", lambda: (lk.reacquire(), r.pttl("lk")), [True, within(9000, 10000)]),
        ("second lock: blocking_timeout passes", other.acquire, False),
        ("second lock: blocking=False", lambda: other.acquire(blocking=False), False),
        ("second lock: owned, locked", lambda: (other.owned(), other.locked()), [False, True]),
        ("release a lock held by another", lambda: release_as(other, b"not-the-token"),
         not_owned("release")),
        ("...the holder still owns it", lk.owned, True),
        ("release", lk.release, None),
        ("...key gone", lambda: (r.exists("lk"), lk.owned(), lk.locked()), [0, False, False]),
        ("release again (client-side check)", lk.release,
         ("LockError", "Cannot release an unlocked lock")),
        ("second lock acquires now", other.acquire, True),
        ("with-block while it is held", lambda: r.lock("lk", blocking_timeout=0.1).__enter__(),
         ("LockError", "Unable to acquire lock within the time specified")),
        ("lock made persistent: extend refuses", lambda: (r.persist("lk"), other.extend(1)),
         not_owned("extend")),
        ("...release works", other.release, None),
        ("with-block", with_block, [True, 1, 0]),
        # A lock whose 100 ms expired: the scripts see no token.
        ("short lock acquire", short.acquire, True),
        ("...expires", lambda: (time.sleep(0.3), r.exists("ex")), [None, 0]),
        ("expired: extend", lambda: short.extend(1), not_owned("extend")),
        ("expired: reacquire", short.reacquire, not_owned("reacquire")),
        ("expired: release", short.release, not_owned("release")),
        # Expired, then taken by another client: the stale holder cannot release it.
        ("expire then take over", lambda: (stale.acquire(), time.sleep(0.3), taker.acquire()),
         [True, None, True]),
        ("stale holder: owned", stale.owned, False),
        ("stale holder: release", stale.release, not_owned("release")),
        ("new holder keeps it", lambda: (taker.owned(), r.exists("ex2")), [True, 1]),
    ]
    out = [(label, call(fn), want) for label, fn, want in steps]

    errors = []

    def worker(_):  # mutual exclusion: read-modify-write under the lock
        c = new_client()
        try:
            for _ in range(50):
                with c.lock("L", timeout=5, blocking_timeout=10):
                    v = int(c.get("c") or 0)
                    c.set("c", v + 1)
        except Exception as e:  # noqa: BLE001 - reported as a check
            errors.append(norm(e))
        c.connection_pool.disconnect()
    run_threads(worker, 4)
    out += [("4 threads x 50 locked increments", call(lambda: r.get("c")), b"200"),
            ("...worker errors", errors, []),
            ("...lock released", call(lambda: r.exists("L")), 0)]
    return out


INCR_SCRIPT = "return {KEYS[1], ARGV[1], redis.call('incr', KEYS[1])}"


def s_register_script(r, new_client):
    """r.register_script: EVALSHA, on NOSCRIPT SCRIPT LOAD then EVALSHA; in pipelines the
    scripts are checked (SCRIPT EXISTS) and loaded before the pipeline is sent."""
    r.script_flush()  # FLUSHALL keeps scripts: start without any
    sha = sha1(INCR_SCRIPT)
    s = r.register_script(INCR_SCRIPT)
    get = r.register_script("return redis.call('get', KEYS[1])")
    no_script = ("NoScriptError", "No matching script. Please use EVAL.")
    steps = [
        ("Script.sha", lambda: s.sha, sha),
        ("script_exists before", lambda: r.script_exists(sha), [False]),
        ("evalsha before load", lambda: r.evalsha(sha, 1, "k", "a"), no_script),
        ("first call: NOSCRIPT, load, EVALSHA", lambda: s(keys=["k"], args=["a"]), [b"k", b"a", 1]),
        ("script_exists after", lambda: r.script_exists(sha, "f" * 40, sha.upper()),
         [True, False, True]),
        ("second call", lambda: s(keys=["k"], args=[5]), [b"k", b"5", 2]),
        ("script_flush", r.script_flush, True),
        ("...script gone", lambda: r.script_exists(sha), [False]),
        ("...evalsha after flush", lambda: r.evalsha(sha, 1, "k", "a"), no_script),
        ("call after flush: NOSCRIPT path again", lambda: s(keys=["k"], args=["x"]),
         [b"k", b"x", 3]),
        ("evalsha after it", lambda: r.evalsha(sha, 1, "k", "y"), [b"k", b"y", 4]),
        ("script_flush ASYNC", lambda: (r.script_flush("ASYNC"), r.script_exists(sha)), [True, [False]]),
        ("script_load", lambda: (r.script_load(INCR_SCRIPT), r.script_exists(sha)), [sha, [True]]),
        ("script_flush SYNC", lambda: (r.script_flush("SYNC"), r.script_exists(sha)), [True, [False]]),
        ("eval", lambda: r.eval(INCR_SCRIPT, 1, "k", "z"), [b"k", b"z", 5]),
        ("eval loads the script", lambda: r.script_exists(sha), [True]),
        ("evalsha_ro", lambda: (r.script_load(get.script), r.evalsha_ro(get.sha, 1, "k")),
         [get.sha, b"5"]),
        ("eval_ro", lambda: r.eval_ro("return #KEYS + #ARGV", 2, "k", "j", "a"), 3),
        ("script from another client", lambda: s(keys=["k"], args=["o"], client=new_client()),
         [b"k", b"o", 6]),
    ]
    out = [(label, call(fn), want) for label, fn, want in steps]
    for transaction in (True, False):
        for flush in (True, False):  # scripts unknown to the server, or already loaded
            if flush:
                r.script_flush()
            p = r.pipeline(transaction=transaction)
            p.set("pk", 10)
            s(keys=["pk"], args=["t"], client=p)
            get(keys=["pk"], client=p)
            s(keys=["pk"], args=["u"], client=p)
            out.append((f"pipeline(transaction={transaction}), flushed={flush}",
                        call(p.execute), [True, [b"pk", b"t", 11], b"11", [b"pk", b"u", 12]]))
            out.append(("...scripts loaded", call(lambda: r.script_exists(s.sha, get.sha)),
                        [True, True]))
        p = r.pipeline(transaction=transaction)
        p.set("pk", "text")
        s(keys=["pk"], args=["e"], client=p)
        p.get("pk")
        out.append((f"pipeline(transaction={transaction}) with a script error",
                    call(lambda: p.execute(raise_on_error=False)),
                    [True, in_script("value is not an integer or out of range", INCR_SCRIPT),
                     b"text"]))
    return out


def s_script_errors(r, new_client):
    """Errors raised in scripts reach redis-py as ResponseError with Redis's message."""
    r.script_flush()
    r.set("textkey", "abc")
    incr = "return redis.call('incr', KEYS[1])"
    not_int = "value is not an integer or out of range"
    three_lines = "local a = 1\nlocal b = 2\nreturn redis.call('incr', KEYS[1])"
    partial = "redis.call('set', KEYS[1], 'written')\nreturn redis.call('incr', KEYS[2])"
    E = lambda msg: ("ResponseError", msg)  # noqa: E731

    def ev(script, *keys):
        return lambda: r.eval(script, len(keys), *keys)

    def in_multi():
        p = r.pipeline()
        p.set("m", "1").eval(incr, 1, "textkey").incr("m")
        return p.execute(raise_on_error=False)
    steps = [
        ("eval incr textkey", ev(incr, "textkey"), in_script(not_int, incr)),
        ("register_script incr textkey", lambda: r.register_script(incr)(keys=["textkey"]),
         in_script(not_int, incr)),
        ("error on line 3", ev(three_lines, "textkey"), in_script(not_int, three_lines, 3)),
        ("pcall returns the error", ev("return redis.pcall('incr', KEYS[1])", "textkey"), E(not_int)),
        ("pcall error table", ev("return redis.pcall('incr', KEYS[1])['err']", "textkey"),
         b"ERR " + not_int.encode()),
        ("write, then an error", ev(partial, "w", "textkey"), in_script(not_int, partial, 2)),
        ("...the write stays", lambda: r.get("w"), b"written"),
        ("in MULTI/EXEC", in_multi, [True, in_script(not_int, incr), 2]),
        ("runtime error", ev("return nil + 1"),
         in_script("user_script:1: attempt to perform arithmetic on a nil value", "return nil + 1")),
        ("error()", ev("error('raw')"), in_script("user_script:1: raw", "error('raw')")),
        ("compile error", ev("return +"),
         E("Error compiling script (new function): user_script:1: unexpected symbol near '+'")),
        ("unknown command", ev("return redis.call('nosuch')"),
         in_script("Unknown Redis command called from script", "return redis.call('nosuch')")),
        ("wrong arity", ev("return redis.call('get')"),
         in_script("Wrong number of args calling Redis command from script",
                   "return redis.call('get')")),
        ("no arguments", ev("return redis.call()"),
         in_script("Please specify at least one argument for this redis lib call",
                   "return redis.call()")),
        ("command not allowed", ev("return redis.call('multi')"),
         in_script("This Redis command is not allowed from script", "return redis.call('multi')")),
        ("eval_ro writes", lambda: r.eval_ro("return redis.call('set', KEYS[1], 'v')", 1, "ro"),
         in_script("Write commands are not allowed from read-only scripts.",
                   "return redis.call('set', KEYS[1], 'v')")),
        ("numkeys > args", lambda: r.eval("return 1", 2, "a"),
         E("Number of keys can't be greater than number of args")),
        ("negative numkeys", lambda: r.eval("return 1", -1), E("Number of keys can't be negative")),
        ("evalsha unknown", lambda: r.evalsha("f" * 40, 0),
         ("NoScriptError", "No matching script. Please use EVAL.")),
        ("{err=...}", ev("return {err='MYCODE custom failure'}"), E("MYCODE custom failure")),
        ("error_reply with a code", ev("return redis.error_reply('MYCODE custom')"), E("MYCODE custom")),
        # Redis turns error_reply('X') into "-ERR X" (a code is the first word before a space,
        # and a leading '-' is taken as the code marker). redis-py strips "ERR ".
        ("error_reply one word", ev("return redis.error_reply('NOSCRIPT')"), E("NOSCRIPT")),
        ("error_reply '-x'", ev("return redis.error_reply('-x')"), E("x")),
        ("error_reply(1)", ev("return redis.error_reply(1)"), E("wrong number or type of arguments")),
        ("status_reply", ev("return redis.status_reply('FINE')"), b"FINE"),
        # A Lua number passed to redis.call must keep its double: Redis 7.0 formats it
        # with %.17g (0.33333333333333331), 7.2 with the shortest round trip.
        ("number argument keeps its precision",
         ev("redis.call('set', KEYS[1], 1/3)\nreturn redis.call('get', KEYS[1])", "n"),
         lambda v: isinstance(v, bytes) and float(v) == 1 / 3),
        ("reply conversions", ev("return {1, 2.9, true, false, 'x', {ok='OK'}, nil, 5}"),
         [1, 2, 1, None, b"x", b"OK"]),
        ("textkey untouched", lambda: r.get("textkey"), b"abc"),
    ]
    return [(label, call(fn), want) for label, fn, want in steps]


def s_redis_cli_eval(r, new_client):
    """redis-cli --eval FILE keys , args: the CLI sends EVAL with the file's text.
    stdout is a pipe, so redis-cli prints raw replies; --no-raw gives the tty format."""
    port = r.connection_pool.connection_kwargs["port"]
    r.set("text", "abc")
    scripts = {
        "ok.lua": "redis.call('set', KEYS[1], ARGV[1])\n"
                  "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], redis.call('incr', KEYS[2]),"
                  " #KEYS, #ARGV}\n",
        "nokeys.lua": "return {#KEYS, #ARGV, 'none'}\n",
        "incr.lua": "local unused = 1\nreturn redis.call('incr', KEYS[1])\n",
        "syntax.lua": "return +\n",
        "error_reply.lua": "return redis.error_reply('boom')\n",
    }
    incr_err = in_script("ERR value is not an integer or out of range", scripts["incr.lua"], 2)[1]
    cases = [
        ("ok.lua", ["key1", "key2", ",", "arg1", "arg2"], [],
         "key1\nkey2\narg1\narg2\n1\n2\n2\n"),
        ("ok.lua", ["key1", "key2", ",", "arg1", "arg2"], ["--no-raw"],
         '1) "key1"\n2) "key2"\n3) "arg1"\n4) "arg2"\n5) (integer) 2\n6) (integer) 2\n'
         '7) (integer) 2\n'),
        ("nokeys.lua", [], [], "0\n0\nnone\n"),
        ("nokeys.lua", [",", "a", "b"], [], "0\n2\nnone\n"),
        ("incr.lua", ["text", ",", "x"], [], incr_err + "\n\n"),
        ("incr.lua", ["text"], ["--no-raw"], "(error) " + incr_err + "\n"),
        ("syntax.lua", [], ["--no-raw"], "(error) ERR Error compiling script (new function): "
         "user_script:1: unexpected symbol near '+'\n"),
        ("error_reply.lua", [], ["--no-raw"], "(error) ERR boom\n"),
    ]
    out = []
    with tempfile.TemporaryDirectory(prefix="redis_cli_eval.") as d:
        for name, text in scripts.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        for name, argv, opts, want in cases:
            res = subprocess.run(["redis-cli", "-p", str(port), *opts, "--eval",
                                  os.path.join(d, name), *argv],
                                 capture_output=True, text=True, timeout=30)
            out.append((f"redis-cli {' '.join(opts)} --eval {name} {' '.join(argv)}",
                        [res.returncode, res.stdout, res.stderr], [0, want, ""]))
    out.append(("get key1 after ok.lua", call(lambda: r.get("key1")), b"arg1"))
    return out


def s_databases_functions(r, new_client):
    kw = r.connection_pool.connection_kwargs
    pool9 = redis.ConnectionPool(host="127.0.0.1", port=kw["port"], parser_class=kw["parser_class"],
                                 db=9, socket_timeout=30)
    r9 = redis.Redis(connection_pool=pool9)  # redis-py sends SELECT 9 on each connection
    out = []
    try:
        r.set("k", "db0")
        r9.set("k", "db9")
        out += [("GET in db 0", r.get("k"), b"db0"), ("GET in db 9", r9.get("k"), b"db9"),
                ("DBSIZE of db 9", r9.dbsize(), 1)]
        with r9.pipeline() as p:  # MULTI/EXEC in database 9
            p.set("t", 1)
            p.incr("t")
            out.append(("transaction in db 9", p.execute(), [True, 2]))
        out.append(("MOVE to db 3", r9.move("k", 3), True))
        out.append(("SWAPDB 0 9", r.swapdb(0, 9), True))
        out += [("db 0 after SWAPDB", r.get("t"), b"2"), ("db 9 after SWAPDB", r9.get("k"), b"db0")]
        payload = r.dump("t")
        out.append(("RESTORE of DUMP", r9.restore("t2", 0, payload), b"OK"))
        out.append(("restored value", r9.get("t2"), b"2"))
        lib = ("#!lua name=pylib\nredis.register_function('pyincr', function(keys, args)\n"
               "  return redis.call('incrby', keys[1], args[1]) end)")
        out.append(("FUNCTION LOAD", r.execute_command("FUNCTION", "LOAD", lib), b"pylib"))
        out.append(("FCALL in db 9", r9.execute_command("FCALL", "pyincr", 1, "n", 5), 5))
        out.append(("FCALL's key is in db 9", (r.get("n"), r9.get("n")), (None, b"5")))
        out.append(("FUNCTION LIST", norm(r.execute_command("FUNCTION", "LIST")),
                    [[b"library_name", b"pylib", b"engine", b"LUA", b"functions",
                      [[b"name", b"pyincr", b"description", None, b"flags", []]]]]))
        r.flushall()
        out.append(("functions survive FLUSHALL",
                    r9.execute_command("FCALL", "pyincr", 1, "n", 1), 1))
        r.execute_command("FUNCTION", "FLUSH")
    finally:
        pool9.disconnect()
    return out


SCENARIOS = [("transaction pipeline", s_transaction_pipeline),
             ("WATCH optimistic locking", s_watch_locking),
             ("WatchError", s_watch_error),
             ("scan_iter", s_scan),
             ("plain commands", s_plain),
             ("redis.lock.Lock", s_lock),
             ("register_script", s_register_script),
             ("script errors", s_script_errors),
             ("redis-cli --eval", s_redis_cli_eval),
             ("databases and functions", s_databases_functions)]


def run_scenario(name, fn, parser, ports):
    """Run fn on FaHA and on Redis; check expectations and compare the two."""
    results = {}
    for server, port in ports.items():
        r = client(port, parser)
        r.flushall()
        conn = r.connection_pool.get_connection("PING")
        assert isinstance(conn._parser, parser), conn._parser  # really this parser
        r.connection_pool.release(conn)
        results[server] = fn(r, lambda port=port: client(port, parser))
        r.connection_pool.disconnect()
    tag, bad, info = f"[{parser.__name__}] {name}", 0, ""
    for (label, fv, want), (_, rv, _) in zip(results["faha"], results["redis"]):
        if want is NONDET:
            info += f", {label}: faha {fv} redis {rv}"
            continue
        problems = [msg for msg, failed in (("FaHA and Redis differ", mask(fv, want) != mask(rv, want)),
                                            ("FaHA not as expected", not matches(fv, want)),
                                            ("Redis not as expected (test bug?)",
                                             not matches(rv, want))) if failed]
        if problems:
            bad += 1
            exp = "" if callable(want) else f"\n    expected: {want!r}"
            failures.append(f"{tag}: {label}: {'; '.join(problems)}\n    FaHA:  {fv!r}\n"
                            f"    Redis: {rv!r}{exp}")
    print(f"{'FAIL' if bad else 'ok  '} {tag}: {len(results['faha'])} checks, {bad} failed{info}",
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
    procs = []  # (name, Popen): only these are killed at the end
    try:
        fport, rport = free_port(), free_port()
        os.mkdir(os.path.join(tmp, "redis"))
        for name, argv in (
                ("faha-server", [faha_bin, "--port", str(fport), "--metrics_port", "-1",
                                 "--data_dir", os.path.join(tmp, "faha")]),
                ("redis-server", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no",
                                  "--dir", os.path.join(tmp, "redis")])):
            with open(os.path.join(tmp, name + ".log"), "wb") as log:
                procs.append((name, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)))
        wait_ready("faha-server", procs[0][1], fport)
        wait_ready("redis-server", procs[1][1], rport)
        for parser in (redis.connection.PythonParser, redis.connection.HiredisParser):
            for name, fn in SCENARIOS:
                run_scenario(name, fn, parser, {"faha": fport, "redis": rport})
        failures.extend(f"{name} exited during the test (status {proc.returncode})"
                        for name, proc in procs if proc.poll() is not None)
    except BaseException as e:
        failures.append(f"aborted: {e!r}")  # the traceback follows
        raise
    finally:
        for name, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if failures:
            print("\nFAILURES:\n" + "\n".join(failures) + f"\n(server logs kept in {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        sys.exit(1)
    print("all scenarios passed")


if __name__ == "__main__":
    main()
