#!/usr/bin/env python3
"""hostile_limits.py: issue 18's memory attack against one server, measured.

  hostile_limits.py --port P --pid PID --password-file F [--greedy 100]
                    [--unauth 1000] [--seconds 10]

From 127.0.0.1: PING the server from one authenticated client for --seconds
(before), then go on PINGing while --greedy clients authenticate and each ask
for 250 MB of replies (one MGET of 480 copies of a 512 KiB value, then 20 GETs
of it) without ever reading, and --unauth clients each try to send 8 MiB
(*1000000, then 1 MiB bulks) without AUTH (during). Prints PING p50/p99/max
before and during, the server's peak RSS (from /proc/PID/status), and what
INFO says it closed and why.
"""
import argparse
import resource
import socket
import threading
import time

from hostile_attack import resp  # same directory


def read_reply(sock):
    """Reads one RESP reply (simple, error, integer or bulk) as bytes."""
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    line, rest = buf.split(b"\r\n", 1)
    if line[:1] != b"$":
        return line
    n = int(line[1:])
    if n < 0:
        return None
    while len(rest) < n + 2:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        rest += chunk
    return rest[:n]


def connect(port, password):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(resp("AUTH", password))
    r = read_reply(s)
    if r != b"+OK":
        raise RuntimeError("AUTH: %r" % r)
    return s


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pings(sock, seconds, out, stop=None):
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (stop and stop.is_set()):
        t0 = time.monotonic()
        sock.sendall(resp("PING"))
        if read_reply(sock) != b"+PONG":
            raise RuntimeError("PING answered wrongly")
        out.append((time.monotonic() - t0) * 1000.0)
        time.sleep(0.002)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, len(xs) * p // 100)] if xs else float("nan")


def info(sock):
    sock.sendall(resp("INFO"))
    text = read_reply(sock).decode()
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k] = v
    return fields


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--greedy", type=int, default=100)
    ap.add_argument("--unauth", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    with open(a.password_file) as f:
        password = f.readline().strip()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    c = connect(a.port, password)
    c.sendall(resp("SET", "big", b"q" * (512 << 10)))
    if read_reply(c) != b"+OK":
        raise RuntimeError("SET big failed")
    rss_before = rss_kib(a.pid)
    before = []
    pings(c, a.seconds, before)

    greedy_request = resp("MGET", *(["big"] * 480)) + resp("GET", "big") * 20
    socks = []
    lock = threading.Lock()
    refused = [0]

    def greedy(n):
        for _ in range(n):
            s = connect(a.port, password)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(greedy_request)
            with lock:
                socks.append(s)

    def unauth(n):
        chunk = b"*1000000\r\n" + (b"$1048576\r\n" + b"z" * (1 << 20) + b"\r\n") * 8
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", a.port))
            s.settimeout(5)
            try:
                s.sendall(chunk)
            except OSError:
                with lock:
                    refused[0] += 1
            with lock:
                socks.append(s)

    during = []
    stop = threading.Event()
    peak = [rss_before]

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(a.pid))
            time.sleep(0.05)

    threads = [threading.Thread(target=greedy, args=(a.greedy // 2,)) for _ in range(2)]
    threads += [threading.Thread(target=unauth, args=(a.unauth // 4,)) for _ in range(4)]
    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    pings(c, a.seconds, during)
    for t in threads:
        t.join()
    attack_s = time.monotonic() - t0
    stop.set()
    sampler.join()
    fields = info(c)
    for s in socks:
        s.close()

    print("attack: %d greedy clients x 250 MB asked, %d unauthenticated x 8 MiB "
          "(%d saw their send fail), %.1f s" % (a.greedy, a.unauth, refused[0], attack_s))
    print("| phase  | PINGs | p50 ms | p99 ms | max ms |")
    print("|--------|-------|--------|--------|--------|")
    for name, xs in (("before", before), ("during", during)):
        print("| %-6s | %5d | %6.2f | %6.2f | %6.1f |" % (name, len(xs), pct(xs, 50), pct(xs, 99),
                                                          max(xs) if xs else float("nan")))
    print("server RSS before %.0f MiB, peak %.0f MiB" % (rss_before / 1024.0, peak[0] / 1024.0))
    for k in ("client_memory", "evicted_clients", "clients_closed_output_limit",
              "clients_closed_preauth", "protocol_errors", "connected_clients"):
        print("%s: %s" % (k, fields.get(k, "-")))


if __name__ == "__main__":
    main()
