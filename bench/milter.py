"""Milter benchmarks for `make bench`: a running `sealgate milter`, driven
over the milter protocol (bench/milterclient.py). Machines are shared and
noisy, so each figure is a ratio against a baseline measured in the same run:

  tcp     mail that needs nothing (to an internal address) through the
          milter on 127.0.0.1, against the same through a unix socket (no
          TCP at all: shows what TCP adds, e.g. Nagle delays);
  store   S/MIME encryption to a partner with PADDING further partner
          certificates in the store (imported while the milter runs),
          against the same with only the partner's certificate.

Usage: bench/milter.py SEALGATE_BIN [MESSAGES]
"""
import concurrent.futures
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "lib"))
import milterclient  # noqa: E402

PADDING = 500


def run(*argv, **kw):
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        check=False, **kw)
    if cp.returncode != 0:
        sys.exit("%s failed: %s" % (argv[0], cp.stderr.decode(errors="replace")))
    return cp.stdout


def self_signed(tmp, key, name, addr, ca=False):
    path = os.path.join(tmp, name + ".pem")
    ext = "basicConstraints=critical,CA:TRUE" if ca else \
        "basicConstraints=critical,CA:FALSE"
    args = ["openssl", "req", "-x509", "-new", "-key", key, "-days", "30",
            "-subj", "/CN=" + name, "-out", path, "-addext", ext]
    if addr:
        args += ["-addext", "subjectAltName=email:" + addr]
    run(*args)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(address, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("sealgate milter exited: %s" % proc.stderr.read().decode())
        try:
            milterclient.Connection(address, timeout=1).sock.close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("sealgate milter did not start listening")


def message(n):
    body = b"".join(b"line %d of the benchmark message, some seventy characters "
                    b"of text.\r\n" % i for i in range(200))
    return (b"From: alice@example.com\r\nTo: carol@partner.example\r\n"
            b"Subject: bench %d\r\nMessage-ID: <bench%d@example.com>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            b"\r\n" % (n, n)) + body


def time_messages(address, count, rcpt="carol@partner.example"):
    """Mean seconds per message to rcpt; a message to carol must come out
    with a new body (encrypted)."""
    start = time.monotonic()
    for n in range(count):
        answer, mods = milterclient.send_message(
            address, "alice@example.com", [rcpt], message(n), queue_id="B%d" % n)
        encrypted = any(code == b"b" for code, _d in mods)
        if answer != "accept" or encrypted != rcpt.startswith("carol"):
            sys.exit("message %d to %s: %s %r" % (n, rcpt, answer, mods[:2]))
    return (time.monotonic() - start) / count


def report(name, value, baseline):
    print("%-44s %8.2f ms  baseline %8.2f ms  ratio %.2f"
          % (name, value * 1000, baseline * 1000, value / baseline))


def run_as():
    """Runs the milter as the user who starts it (root must say so)."""
    return ["-u", pwd.getpwuid(os.geteuid()).pw_name]


def start_milter(binary, policy, socket_spec, address):
    proc = subprocess.Popen([binary, "milter", "-c", policy, "-s", socket_spec, "-f"]
                            + run_as(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_listening(address, proc)
    return proc


def stop_milter(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def main():
    binary = os.path.abspath(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    tmp = tempfile.mkdtemp(prefix="sgbenchm.", dir="/tmp")
    procs = []
    try:
        key = os.path.join(tmp, "p.key")
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-out", key)
        carol = self_signed(tmp, key, "Carol", "carol@partner.example")
        padding = os.path.join(tmp, "padding.pem")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            paths = pool.map(lambda i: self_signed(tmp, key, "Pad%d" % i,
                                                   "pad%d@pad.example" % i),
                             range(PADDING))
            with open(padding, "wb") as out:
                for path in paths:
                    with open(path, "rb") as f:
                        out.write(f.read())
        policy = os.path.join(tmp, "policy.yaml")
        with open(policy, "w") as f:
            f.write("version: 1\n"
                    "gateway: { keystore: store, spool_dir: spool }\n"
                    "internal_domains: [example.com]\n"
                    "outbound:\n"
                    "  default: { action: encrypt-if-key, methods: [smime] }\n")
        # A self-signed partner certificate is trusted as imported.
        run(binary, "keys", "-c", policy, "import", "--trust-anchor", carol)
        port = free_port()
        tcp = ("127.0.0.1", port)
        unix = os.path.join(tmp, "milter.sock")
        procs.append(start_milter(binary, policy, "inet:%d@127.0.0.1" % port, tcp))
        procs.append(start_milter(binary, policy, "unix:" + unix, unix))

        internal = "bob@example.com"
        time_messages(tcp, 3, internal)             # warm up
        time_messages(unix, 3, internal)
        report("pass-through via milter, tcp vs unix socket",
               time_messages(tcp, count, internal), time_messages(unix, count, internal))

        time_messages(unix, 3)
        small = time_messages(unix, count)
        run(binary, "keys", "-c", policy, "import", padding)
        time_messages(unix, 3)
        report("S/MIME via milter, %d certs vs 1" % (PADDING + 1),
               time_messages(unix, count), small)
    finally:
        for proc in procs:
            stop_milter(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
