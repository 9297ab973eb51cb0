#!/usr/bin/env python3
"""hostile_attack.py: the hostile clients of issue 18, all at once, for a while.

  hostile_attack.py --port P --repl-ports R1,R2 --password-file F --seconds S

Runs until S seconds pass, from 127.0.0.1 only:
  silent-repl   20 connections to each replication port that never send a byte
                (re-opened as soon as the backup closes them)
  greedy        16 clients that authenticate, ask for 10 MGETs of 40 copies of a
                512 KiB key (200 MiB of replies each) and never read
  preauth       50 clients that send *1000000 and a 1 MiB bulk without AUTH
  trickle       20 clients that authenticate and send one command a byte every
                100 ms
  idle          200 clients that connect and say nothing
Each kind re-opens its connections when the server closes them. Prints one
line per kind: connections opened, and how many were seen closed (a client
that never reads does not see the close of a server that still had replies
queued for it: the FIN waits behind them; the server's own counters do).
"""
import argparse
import select
import socket
import threading
import time


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Kind:
    def __init__(self, name):
        self.name = name
        self.opened = 0
        self.closed_by_server = 0
        self.lock = threading.Lock()

    def count(self, opened=0, closed=0):
        with self.lock:
            self.opened += opened
            self.closed_by_server += closed


def closed(sock):
    """True once the server closed the connection (its FIN or RST), whether
    or not replies are still unread: nothing is read."""
    p = select.poll()
    p.register(sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    return bool(p.poll(0))


def keep(kind, n, port, first_bytes, stop, trickle=None):
    socks = [None] * n
    while not stop.is_set():
        for i in range(n):
            s = socks[i]
            if s is not None and not closed(s):
                if trickle is not None:
                    pos, payload = trickle[i]
                    if pos < len(payload):
                        try:
                            s.send(payload[pos:pos + 1])
                            trickle[i] = (pos + 1, payload)
                        except OSError:
                            pass
                continue
            if s is not None:
                kind.count(closed=1)
                s.close()
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                if first_bytes:
                    s.setblocking(False)
                    try:
                        s.send(first_bytes)
                    except OSError:
                        pass
                socks[i] = s
                kind.count(opened=1)
                if trickle is not None:
                    trickle[i] = (0, resp("SET", "trickle%d" % i, "x" * 64))
            except OSError:
                socks[i] = None
        time.sleep(0.1)
    for s in socks:
        if s is not None:
            s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--repl-ports", default="")
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--seconds", type=float, default=30)
    a = ap.parse_args()
    pw = open(a.password_file, "rb").read().strip()
    auth = resp("AUTH", pw)
    # The key the greedy clients ask for.
    s = socket.create_connection(("127.0.0.1", a.port))
    s.sendall(auth + resp("SET", "hostile-big", b"b" * (512 << 10)))
    got = b""
    while got.count(b"\r\n") < 2:
        got += s.recv(100)
    s.close()
    greedy = auth + resp("MGET", *(["hostile-big"] * 40)) * 10
    stop = threading.Event()
    kinds = []
    threads = []

    def start(name, n, port, first, trickle=False):
        k = Kind(name)
        kinds.append(k)
        t = threading.Thread(target=keep,
                             args=(k, n, port, first, stop, [None] * n if trickle else None))
        t.start()
        threads.append(t)

    for rp in [int(p) for p in a.repl_ports.split(",") if p]:
        start("silent-repl:%d" % rp, 20, rp, b"")
    start("greedy", 16, a.port, greedy)
    start("preauth", 50, a.port, b"*1000000\r\n$1048576\r\n" + b"z" * (1 << 20))
    start("trickle", 20, a.port, auth, trickle=True)
    start("idle", 200, a.port, b"")
    time.sleep(a.seconds)
    stop.set()
    for t in threads:
        t.join()
    for k in kinds:
        print("%-18s opened %6d  seen closed %6d" % (k.name, k.opened, k.closed_by_server))


if __name__ == "__main__":
    main()
