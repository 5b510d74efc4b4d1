#!/usr/bin/env python3
"""`make bench`: sealgate's benchmarks, one command.

    bench.py --bin BUILD/sealgate [--count N] [--rounds R] [--quick]
             [--out FILE.md] [--json FILE.json] [--parts e2e,rss,ops]
             [--scenarios KEY,...] [--reuse] [--perf DIR]

Machines are shared and noisy: every figure is the median of several runs
(--rounds, default 3), and every comparison is a ratio against a baseline
measured in the same invocation.

1. End to end: `smtp-source` (8 sessions, --count messages of 10 KB, one
   SMTP connection each) -> a private Postfix on 127.0.0.1
   (tests/lib/postfix.py) with sealgate as its milter -> `smtp-sink`. A
   run ends when Postfix has delivered every message to the sink.
   Scenarios: Postfix alone (the baseline), pass-through (to a partner
   without a key under encrypt-if-key), the same with the milter on an
   inet: socket instead of a unix socket, OpenPGP encrypt, S/MIME encrypt,
   S/MIME sign, inbound S/MIME decrypt, inbound OpenPGP decrypt. Figures:
   messages per second, the ratio to Postfix alone, sealgate's CPU per
   message (and the part of it in the processes it starts), Postfix's own
   CPU per message, and the p50/p99 of the time sealgate adds to a message
   (the `busy=` of its log line: time spent in its callbacks). Every
   message must have been treated as the scenario says (from the milter's
   log). Inbound OpenPGP runs an eighth of the count (it is slow). Postfix
   alone runs right before each scenario with the same count, and each
   ratio is the median of these pairs.
   CPU: the milter runs under bench/subreaper.py, which waits for the gpg
   processes GPGME starts detached; sealgate's CPU is the milter's own
   utime+stime, the cutime+cstime of everything waited for below the
   subreaper, and the CPU of processes still running below it (gpg-agent).
2. Per operation, in process (bench/ops.c, 4 KB, 100 KB, 10 MB): what the
   milter does for one message (spool, classify, sg_pipeline_run), against
   the bare GPGME / OpenSSL CMS call and the `gpg` / `openssl cms` command
   a script gateway runs per message.
3. Peak RSS of the milter (VmHWM, reset through /proc/PID/clear_refs) for
   one 50 MB message outbound (OpenPGP and S/MIME) and inbound (both), and
   for 8 x 5 MB messages sent at once (OpenPGP and S/MIME).

--quick (for ctest) runs every part with small counts and sizes. --parts
and --scenarios run a subset (no report file unless --out); --perf DIR
records the milter with `perf record` during each scenario's first run.
Needs root, Postfix (smtp-source, smtp-sink), gpg and openssl.
"""

import argparse
import base64
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import postfix  # noqa: E402  (after sys.path)
import sgtest  # noqa: E402

KEYS = os.path.join(ROOT, "keys-example")
PGP = os.path.join(KEYS, "openpgp")
SMIME = os.path.join(KEYS, "smime")
KB = 1024
MB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")

ALICE = "alice@example.com"            # internal sender; signs (S/MIME)
BOB = "bob@example.com"                # internal recipient; decrypts
CAROL = "carol@partner.example"        # OpenPGP partner
FRANK = "frank@smime.example"          # S/MIME partner (example CA)
NOKEY = "zoe@nokey.example"            # external, no key: passes
LIST = "list@sign.example"             # signed, not encrypted
INBOUND_CLIENT = "127.0.0.1"           # untrusted under the inbound policy


class BenchError(Exception):
    pass


def say(*args):
    print(*args, flush=True)


def run(argv, input=None, timeout=600):
    cp = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=timeout, check=False)
    if cp.returncode != 0:
        raise BenchError("%s failed (exit %d): %s" % (
            " ".join(argv[:3]), cp.returncode,
            cp.stderr.decode("utf-8", "replace")[-2000:]))
    return cp.stdout


def median(values):
    return statistics.median(values) if values else None


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    v = sorted(values)
    return v[max(0, math.ceil(p / 100.0 * len(v)) - 1)]


def ratio(a, b):
    return a / b if a is not None and b else None


# --------------------------------------------------------------------------
# Messages


def text_body(size):
    """Plain text of about size bytes, lines of 72 characters."""
    lines, n, total = [], 0, 0
    while total < size:
        line = b"line %06d of the benchmark message, some seventy characters" \
               b" of text.\n" % n
        lines.append(line)
        total += len(line)
        n += 1
    return b"".join(lines)[:size]


def attachment_entity(size):
    """A multipart/mixed entity of about size bytes: a short text and a
    base64 attachment of random bytes (incompressible, as mail is)."""
    raw = os.urandom(max(1, size * 3 // 4 - 1024))
    b64 = base64.encodebytes(raw)
    return (b"Content-Type: multipart/mixed; boundary=\"bench-mixed\"\n\n"
            b"--bench-mixed\nContent-Type: text/plain; charset=us-ascii\n\n"
            b"The report is attached.\n\n--bench-mixed\n"
            b"Content-Type: application/octet-stream; name=\"report.bin\"\n"
            b"Content-Disposition: attachment; filename=\"report.bin\"\n"
            b"Content-Transfer-Encoding: base64\n\n" + b64 +
            b"\n--bench-mixed--\n")


def inner_entity(size):
    """The MIME entity to send or encrypt: text up to 1 MB, an attachment
    above that."""
    if size > MB:
        return attachment_entity(size)
    return (b"Content-Type: text/plain; charset=us-ascii\n"
            b"Content-Transfer-Encoding: 7bit\n\n" + text_body(size))


def headers(frm, to, subject, n=0):
    return ("From: <%s>\nTo: <%s>\nSubject: %s\nDate: Mon, 7 Dec 2026 "
            "09:00:00 +0000\nMessage-ID: <bench%d.%s@bench.invalid>\n"
            "MIME-Version: 1.0\n" % (frm, to, subject, n,
                                     os.urandom(4).hex())).encode()


def plain_message(size, frm, to, subject="benchmark"):
    return headers(frm, to, subject) + inner_entity(size)


class Env:
    """The temporary directory, keystore, policies and messages."""

    def __init__(self, binary):
        self.bin = os.path.abspath(binary)
        self.tool = os.path.join(os.path.dirname(self.bin), "sealgate-bench")
        for p in (self.bin, self.tool):
            if not os.access(p, os.X_OK):
                raise BenchError("%s is not built" % p)
        self.tmp = tempfile.mkdtemp(prefix="sgbench.", dir="/tmp")
        os.chmod(self.tmp, 0o755)
        self.store = os.path.join(self.tmp, "store")
        self.home = os.path.join(self.store, "openpgp")
        self.policy_out = self.write_policy("out.yaml", "[127.0.0.0/8]")
        # 127.0.0.1 untrusted: mail from it to internal users is inbound.
        self.policy_in = self.write_policy("in.yaml", "[192.0.2.0/24]")
        self.fpr = {}

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write_policy(self, name, trusted):
        path = self.path(name)
        with open(path, "w") as f:
            f.write("""version: 1
gateway:
  keystore: store
  spool_dir: spool
  max_message_size: 100M
  trusted_networks: %s
  signing_networks: [127.0.0.0/8]
internal_domains: [example.com]
outbound:
  default: { action: encrypt-if-key, methods: [openpgp, smime] }
  rules:
    - name: bench-sign
      when: { recipient_domain: [sign.example] }
      action: sign
      methods: [smime]
inbound:
  decrypt: true
  verify: true
""" % trusted)
        return path

    def sealgate(self, *args):
        return run([self.bin] + list(args))

    def import_keys(self):
        self.sealgate("keys", "-c", self.policy_out, "import", "--trust-anchor",
                      os.path.join(SMIME, "ca.pem"))
        self.sealgate("keys", "-c", self.policy_out, "import",
                      os.path.join(PGP, "carol.pub.asc"),
                      os.path.join(PGP, "bob.sec.asc"),
                      os.path.join(SMIME, "frank.pem"),
                      os.path.join(SMIME, "alice.p12"),
                      os.path.join(SMIME, "bob.p12"))
        listing = json.loads(self.sealgate("keys", "-c", self.policy_out,
                                           "list", "--json"))
        for ident in listing:
            if ident.get("method") == "openpgp":
                self.fpr[ident["address"]] = ident["fingerprint"]
        for addr in (CAROL, BOB):
            if addr not in self.fpr:
                raise BenchError("no OpenPGP key for %s after import" % addr)
        os.makedirs(self.path("spool"), mode=0o700, exist_ok=True)

    def gpg(self, *args, input=None):
        return run(["gpg", "--homedir", self.home, "--batch", "--no-tty",
                    "--quiet", "--trust-model", "always"] + list(args),
                   input=input)

    def write(self, name, data):
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def pgp_armored(self, entity):
        """entity encrypted to bob, armored, uncompressed (so that its size
        is predictable)."""
        return self.gpg("--armor", "-z", "0", "--encrypt", "-r",
                        self.fpr[BOB], input=entity)

    def pgp_mime(self, armored, n=0):
        return (headers(CAROL, BOB, "encrypted", n) +
                b"Content-Type: multipart/encrypted; "
                b"protocol=\"application/pgp-encrypted\"; "
                b"boundary=\"bench-pgp\"\n\n--bench-pgp\n"
                b"Content-Type: application/pgp-encrypted\n\nVersion: 1\n\n"
                b"--bench-pgp\nContent-Type: application/octet-stream; "
                b"name=\"encrypted.asc\"\n\n" + armored + b"\n--bench-pgp--\n")

    def smime_message(self, entity, n=0):
        """entity in AuthEnvelopedData (AES-256-GCM) to bob, as an S/MIME
        message from carol."""
        src = self.write("smime-in.tmp", entity)
        out = run(["openssl", "cms", "-encrypt", "-aes-256-gcm", "-in", src,
                   "-from", CAROL, "-to", BOB, "-subject", "encrypted",
                   os.path.join(SMIME, "bob.pem")])
        os.unlink(src)
        return (b"Date: Mon, 7 Dec 2026 09:00:00 +0000\n"
                b"Message-ID: <bench-smime%d.%s@bench.invalid>\n"
                % (n, os.urandom(4).hex().encode())) + out

    def inbound_pgp(self, size):
        """A PGP/MIME message of about size bytes on the wire."""
        return self.pgp_mime(self.pgp_armored(inner_entity(size * 72 // 100)))

    def inbound_smime(self, size):
        return self.smime_message(inner_entity(size * 72 // 100))

    def cleanup(self):
        subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "all"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# The milter, its CPU and memory


def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime) in ticks, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12]), \
        int(fields[13]) + int(fields[14])


def proc_table():
    """proc_stat of every process: {pid: (ppid, own, children)}."""
    stats = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            st = proc_stat(int(pid))
            if st:
                stats[int(pid)] = st
    return stats


def descendants(stats, root):
    """The pids below root."""
    out, todo = [], [root]
    while todo:
        parent = todo.pop()
        for pid, st in stats.items():
            if st[0] == parent:
                out.append(pid)
                todo.append(pid)
    return out


def tree_cpu_seconds(root):
    """CPU of root and of everything below it, finished (and waited for)
    or running."""
    stats = proc_table()
    if root not in stats:
        raise BenchError("process %d is gone" % root)
    return sum(stats[pid][1] + stats[pid][2]
               for pid in [root] + descendants(stats, root)) / CLK_TCK


class Daemon:
    """`sealgate milter` under bench/subreaper.py."""

    def __init__(self, env, name, policy, unix=True):
        self.env = env
        self.name = name
        self.log_path = env.path(name + ".log")
        if unix:
            self.sock = env.path(name + ".sock")
            self.spec = "unix:" + self.sock
            self.postfix_spec = self.spec
        else:
            self.sock = None
            self.port = postfix.free_port()
            self.spec = "inet:%d@127.0.0.1" % self.port
            self.postfix_spec = "inet:127.0.0.1:%d" % self.port
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "bench", "subreaper.py"),
                 env.bin, "milter", "-c", policy, "-s", self.spec, "-f"]
                + sgtest.milter_user_args(),
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.pid = None
        self.wait_ready()

    def wait_ready(self, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            if self.pid is None:
                self.pid = self.child_pid()
            ready = (os.path.exists(self.sock) if self.sock
                     else postfix.tcp_listening(self.port))
            if self.pid is not None and ready:
                if self.sock:
                    # The socket is 0770 root:root; Postfix writes to it as
                    # the postfix group.
                    os.chown(self.sock, 0, postfix.pwd.getpwnam(
                        postfix.POSTFIX_USER).pw_gid)
                return
            time.sleep(0.05)
        raise BenchError("milter %s did not start:\n%s" % (
            self.name, postfix.read_log(self.log_path)[-3000:]))

    def child_pid(self):
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                st = proc_stat(int(pid))
                if st and st[0] == self.proc.pid:
                    return int(pid)
        return None

    def cpu_seconds(self):
        """CPU seconds: own (the milter's utime+stime), waited (the
        cutime+cstime of the children the milter waited for), reaped (of
        the orphans the subreaper waited for: gpg) and running (processes
        still running below the subreaper: gpg-agent)."""
        stats = proc_table()
        root = stats.get(self.proc.pid)
        milter = stats.get(self.pid)
        if root is None or milter is None:
            raise BenchError("the milter %s is gone" % self.name)
        out = {"own": milter[1], "waited": milter[2], "reaped": root[2],
               "running": 0}
        for pid in descendants(stats, self.proc.pid):
            if pid != self.pid:
                out["running"] += stats[pid][1] + stats[pid][2]
        return {k: v / CLK_TCK for k, v in out.items()}

    def reset_peak(self):
        with open("/proc/%d/clear_refs" % self.pid, "w") as f:
            f.write("5")

    def peak_rss_mb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        raise BenchError("no VmHWM for %s" % self.name)

    def rss_mb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        raise BenchError("no VmRSS for %s" % self.name)

    def log_size(self):
        return postfix.file_size(self.log_path)

    def summaries(self, offset):
        """(verdict, action, method, busy ms) of each summary line logged
        since offset."""
        out = []
        for m in SUMMARY_RE.finditer(postfix.read_log(self.log_path, offset)):
            out.append((m.group(1), m.group(2), m.group(3),
                        float(m.group(4))))
        return out

    def stop(self):
        """SIGTERM through the subreaper; the milter and the subreaper are
        killed (by their pids) when they have not ended 20 s later."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                if self.pid is not None:
                    try:
                        os.kill(self.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.kill()
                self.proc.wait(5)


SUMMARY_RE = re.compile(r"verdict=(\S+) rule=\S+ action=(\S+) method=(\S+) "
                        r"keys=\S*(?: cipher=\"[^\"]*\")? reason=\".*?\" "
                        r"time=[\d.]+ms "
                        r"busy=([\d.]+)ms")


# --------------------------------------------------------------------------
# Postfix


class NullSink(postfix.SmtpSink):
    """smtp-sink that keeps nothing (no -d): the benchmark only counts."""

    def start(self):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [postfix._which("smtp-sink"), "-u", postfix.POSTFIX_USER,
             "-t", "300", "127.0.0.1:%d" % self.port, "256"],
            stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        if not postfix.wait_port(self.port, 10, proc=self.proc):
            self.stop()
            raise BenchError("smtp-sink did not start: " + self.log_text())


class BenchPostfix(postfix.PrivatePostfix):
    """A private Postfix whose main smtpd has no milter (Postfix alone),
    with one more smtpd per milter (name -> Postfix milter spec)."""

    def __init__(self, milters):
        self.milters = dict(milters)
        self.ports = {name: postfix.free_port() for name in self.milters}
        super().__init__(None, start=False, extra_main={
            "message_size_limit": "209715200",
            "milter_content_timeout": "600s",
            "milter_command_timeout": "120s",
        })
        self.sink = NullSink(os.path.join(self.dir, "sink"))
        self.start()
        for port in self.ports.values():
            if not postfix.wait_port(port, 20):
                raise BenchError("Postfix does not listen on %d" % port)

    def master_pid(self):
        with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
            return int(f.read().strip())

    def write_config(self):
        super().write_config()
        with open(os.path.join(self.config_dir, "master.cf"), "a") as f:
            for name, spec in self.milters.items():
                f.write("127.0.0.1:%d inet n - n - - smtpd\n"
                        "  -o smtpd_milters=%s\n" % (self.ports[name], spec))


class MaillogTail:
    """Counts Postfix's deliveries as its log grows; fails fast on a
    reject, deferral or bounce."""

    BAD = re.compile(r"milter-reject|status=(deferred|bounced)|"
                     r" reject: |warning: milter")

    def __init__(self, path):
        self.path = path
        self.off = postfix.file_size(path)
        self.partial = b""
        self.sent = 0

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return
        self.off += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            text = line.decode("utf-8", "replace")
            if "status=sent" in text:
                self.sent += 1
            elif self.BAD.search(text):
                raise BenchError("Postfix: " + text)


# --------------------------------------------------------------------------
# 1. End to end


class Scenario:
    def __init__(self, key, title, listener, frm, to, msg, daemon, expect,
                 count=None):
        self.key, self.title, self.listener = key, title, listener
        self.count = count
        self.frm, self.to, self.msg = frm, to, msg
        self.daemon = daemon      # None: Postfix alone
        self.expect = expect      # (action, method) in the milter's log
        self.rates, self.cpu, self.started, self.busy = [], [], [], []
        self.postfix_cpu, self.generator_cpu, self.ratios = [], [], []


def load_generator_cpu(pf):
    """CPU seconds of the smtp-source runs this process waited for and of
    the running smtp-sink."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    sink = proc_stat(pf.sink.proc.pid)
    return ru.ru_utime + ru.ru_stime + (sink[1] / CLK_TCK if sink else 0)


def send(pf, sc, count, sessions, timeout, reuse=False):
    """One run: returns (seconds until all were delivered, CPU seconds of
    the milter as Daemon.cpu_seconds splits them, busy ms of each message,
    CPU seconds of Postfix (its master and everything below it) and of
    smtp-source and smtp-sink)."""
    if not pf.wait_queue_empty(60):
        raise BenchError("Postfix's queue does not empty")
    tail = MaillogTail(pf.maillog_path)
    d = sc.daemon
    log_off = d.log_size() if d else 0
    cpu0 = d.cpu_seconds() if d else None
    master = pf.master_pid()
    pf_cpu0 = tree_cpu_seconds(master)
    gen_cpu0 = load_generator_cpu(pf)
    port = pf.port if sc.listener is None else pf.ports[sc.listener]
    t0 = time.monotonic()
    src = subprocess.Popen(
        [postfix._which("smtp-source"), "-s", str(sessions), "-m", str(count),
         "-f", sc.frm, "-t", sc.to, "-F", sc.msg] + (["-d"] if reuse else [])
        + ["127.0.0.1:%d" % port],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    end = t0 + timeout
    while tail.sent < count:
        tail.poll()
        if time.monotonic() > end:
            src.kill()
            raise BenchError("%s: %d of %d delivered after %ds" % (
                sc.title, tail.sent, count, timeout))
        time.sleep(0.005)
    elapsed = time.monotonic() - t0
    pf_cpu = tree_cpu_seconds(master) - pf_cpu0
    out = src.communicate(timeout=60)[0]
    if src.returncode != 0:
        raise BenchError("smtp-source: " + out.decode("utf-8", "replace"))
    others = {"postfix": pf_cpu, "generators": load_generator_cpu(pf) -
              gen_cpu0}
    if d is None:
        return elapsed, None, [], others
    # The milter logs its summary before it answers: all are there.
    cpu1 = d.cpu_seconds()
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu1}
    rows = d.summaries(log_off)
    wrong = [r for r in rows if (r[0], r[1], r[2]) !=
             ("accept",) + sc.expect]
    if len(rows) != count or wrong:
        # The lines themselves say why (reason="...").
        lines = [l for l in postfix.read_log(d.log_path, log_off).splitlines()
                 if SUMMARY_RE.search(l) and "action=%s method=%s " % sc.expect
                 not in l]
        raise BenchError("%s: the milter logged %d messages (of %d), %d not "
                         "%s: %r\n%s" % (sc.title, len(rows), count, len(wrong),
                                         "accept %s %s" % sc.expect, wrong[:3],
                                         "\n".join(lines[:3])))
    return elapsed, cpu, [r[3] for r in rows], others


def perf_record(directory, sc):
    """With --perf: `perf record` of the milter (with its threads) during
    a run, with DWARF call graphs (libmilter and sealgate have no frame
    pointers)."""
    if not directory or sc.daemon is None:
        return None
    os.makedirs(directory, exist_ok=True)
    proc = subprocess.Popen(["perf", "record", "-q", "-F", "299",
                             "--call-graph", "dwarf,8192", "-p",
                             str(sc.daemon.pid), "-o",
                             os.path.join(directory, sc.key + ".data")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)     # perf needs a moment before it samples
    if proc.poll() is not None:
        raise BenchError("perf record: " + proc.stderr.read().decode())
    return proc


def perf_stop(proc):
    if proc is not None:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def e2e(env, pf, daemons, args):
    size = 10 * KB
    msg_out = {to: env.write("e2e-%s.eml" % to.split("@")[1],
                             plain_message(size, ALICE, to))
               for to in (NOKEY, CAROL, FRANK, LIST)}
    msg_pgp = env.write("e2e-in-pgp.eml", env.inbound_pgp(size))
    msg_smime = env.write("e2e-in-smime.eml", env.inbound_smime(size))
    out, tcp, inb = daemons["out"], daemons["tcp"], daemons["in"]
    scenarios = [
        Scenario("postfix", "Postfix alone", None, ALICE, NOKEY,
                 msg_out[NOKEY], None, None),
        Scenario("pass", "pass-through", "out", ALICE, NOKEY, msg_out[NOKEY],
                 out, ("pass", "-")),
        Scenario("pass-tcp", "pass-through, milter on inet:", "tcp", ALICE,
                 NOKEY, msg_out[NOKEY], tcp, ("pass", "-")),
        Scenario("openpgp", "OpenPGP encrypt", "out", ALICE, CAROL,
                 msg_out[CAROL], out, ("encrypt", "openpgp")),
        Scenario("smime", "S/MIME encrypt", "out", ALICE, FRANK,
                 msg_out[FRANK], out, ("encrypt", "smime")),
        Scenario("smime-sign", "S/MIME sign", "out", ALICE, LIST,
                 msg_out[LIST], out, ("sign", "smime")),
        Scenario("in-smime", "inbound S/MIME decrypt", "in", CAROL, BOB,
                 msg_smime, inb, ("decrypt", "smime")),
        # Each message stages the recipient's secret key in a GnuPG home
        # of its own (README, "Performance"): about 15 messages a second,
        # so an eighth of the count keeps `make bench` within its time.
        Scenario("in-openpgp", "inbound OpenPGP decrypt", "in", CAROL, BOB,
                 msg_pgp, inb, ("decrypt", "openpgp"),
                 count=max(2, args.count // 8)),
    ]
    if args.scenarios:
        keep = set(args.scenarios.split(",")) | {"postfix"}
        unknown = keep - {sc.key for sc in scenarios}
        if unknown:
            raise BenchError("unknown scenario(s): %s" % ", ".join(unknown))
        scenarios = [sc for sc in scenarios if sc.key in keep]
    timeout = max(120, args.count)
    warm = min(args.count, 20)
    say("== end to end: %d x 10 KB, %d sessions, %d rounds" % (
        args.count, args.sessions, args.rounds))
    for sc in scenarios:
        send(pf, sc, warm, args.sessions, timeout, args.reuse)
    base = scenarios[0]

    def one(sc, n, rnd):
        rec = perf_record(args.perf, sc) if rnd == 0 else None
        try:
            secs, cpu, busy, others = send(pf, sc, n, args.sessions, timeout,
                                           args.reuse)
        finally:
            perf_stop(rec)
        sc.rates.append(n / secs)
        sc.postfix_cpu.append(others["postfix"] * 1000.0 / n)
        sc.generator_cpu.append(others["generators"] * 1000.0 / n)
        if cpu is not None:
            sc.cpu.append(sum(cpu.values()) * 1000.0 / n)
            sc.started.append((cpu["waited"] + cpu["reaped"] +
                               cpu["running"]) * 1000.0 / n)
        sc.busy.extend(busy)
        say("   round %d  %-34s %8.1f msg/s%s" % (
            rnd + 1, sc.title, n / secs, "" if cpu is None else
            "  %.2f ms CPU/msg" % sc.cpu[-1]))
        return n / secs

    # Postfix alone runs right before each scenario, with the same count:
    # each ratio compares two runs seconds apart, which a shared machine's
    # changing load affects alike.
    for rnd in range(args.rounds):
        for sc in scenarios[1:]:
            n = sc.count or args.count
            b = one(base, n, rnd)
            sc.ratios.append(one(sc, n, rnd) / b)
    rows = []
    for sc in scenarios:
        rows.append({
            "key": sc.key, "title": sc.title, "count": sc.count or args.count,
            "rate": median(sc.rates),
            "ratio": 1.0 if sc is base else median(sc.ratios),
            "cpu_ms": median(sc.cpu) if sc.daemon else None,
            "started_cpu_ms": median(sc.started) if sc.daemon else None,
            "postfix_cpu_ms": median(sc.postfix_cpu),
            "generator_cpu_ms": median(sc.generator_cpu),
            "p50_ms": percentile(sc.busy, 50) if sc.daemon else None,
            "p99_ms": percentile(sc.busy, 99) if sc.daemon else None,
            "runs": sc.rates,
        })
    return rows


# --------------------------------------------------------------------------
# 2. Per operation, in process


def time_command(argv, n):
    """ms of each of n runs of argv (after one untimed run)."""
    run(argv)
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        run(argv)
        out.append((time.monotonic() - t0) * 1000.0)
    return out


def tool(env, *args):
    """ms of each run of sealgate-bench (its first run is dropped)."""
    res = json.loads(run([env.tool] + [str(a) for a in args]))
    return res, res["ms"][1:]


def ops(env, sizes, iterations):
    home, out = env.home, env.path("ops-out")
    alice_pem, alice_key = (os.path.join(SMIME, "alice.pem"),
                            os.path.join(SMIME, "alice.key"))
    bob_pem, bob_key = (os.path.join(SMIME, "bob.pem"),
                        os.path.join(SMIME, "bob.key"))
    frank_pem = os.path.join(SMIME, "frank.pem")
    gpg = ["gpg", "--homedir", home, "--batch", "--no-tty", "--quiet",
           "--yes", "--trust-model", "always", "--output", out]
    rows = []
    say("== per operation, in process: %s" % ", ".join(
        size_name(s) for s in sizes))
    for size in sizes:
        n = iterations(size)
        plain = {to: env.write("op-%d-%s.eml" % (size, to.split("@")[1]),
                               plain_message(size, ALICE, to))
                 for to in (CAROL, FRANK, LIST)}
        entity = inner_entity(size)
        armored = env.pgp_armored(entity)
        pgp_file = env.write("op-%d.asc" % size, armored)
        pgp_msg = env.write("op-%d-pgp.eml" % size, env.pgp_mime(armored))
        smime_msg = env.write("op-%d-smime.eml" % size,
                              env.smime_message(entity))
        cases = [
            ("OpenPGP encrypt", "encrypt", "openpgp",
             ("pipeline", env.policy_out, ALICE, CAROL, "127.0.0.1",
              plain[CAROL]),
             ("gpgme-encrypt", home, env.fpr[CAROL], plain[CAROL]),
             gpg + ["--armor", "--encrypt", "-r", env.fpr[CAROL],
                    plain[CAROL]]),
            ("S/MIME encrypt", "encrypt", "smime",
             ("pipeline", env.policy_out, ALICE, FRANK, "127.0.0.1",
              plain[FRANK]),
             ("cms-encrypt", frank_pem, plain[FRANK]),
             ["openssl", "cms", "-encrypt", "-aes-256-gcm", "-in",
              plain[FRANK], "-out", out, frank_pem]),
            ("S/MIME sign", "sign", "smime",
             ("pipeline", env.policy_out, ALICE, LIST, "127.0.0.1",
              plain[LIST]),
             ("cms-sign", alice_pem, alice_key, plain[LIST]),
             ["openssl", "cms", "-sign", "-signer", alice_pem, "-inkey",
              alice_key, "-in", plain[LIST], "-out", out]),
            ("OpenPGP decrypt", "decrypt", "openpgp",
             ("pipeline", env.policy_in, CAROL, BOB, INBOUND_CLIENT,
              pgp_msg),
             ("gpgme-decrypt", home, pgp_file),
             gpg + ["--decrypt", pgp_file]),
            ("S/MIME decrypt", "decrypt", "smime",
             ("pipeline", env.policy_in, CAROL, BOB, INBOUND_CLIENT,
              smime_msg),
             ("cms-decrypt", bob_pem, bob_key, smime_msg),
             ["openssl", "cms", "-decrypt", "-recip", bob_pem, "-inkey",
              bob_key, "-in", smime_msg, "-out", out]),
        ]
        for title, action, method, pipe, bare, cmd in cases:
            res, t_sg = tool(env, *(pipe + (n + 1,)))
            if (res["action"], res["method"]) != (action, method):
                raise BenchError("%s: the pipeline did %s %s" % (
                    title, res["action"], res["method"]))
            _res, t_bare = tool(env, *(bare + (n + 1,)))
            t_cmd = time_command(cmd, n)
            row = {"op": title, "size": size, "n": n,
                   "sealgate_ms": median(t_sg), "bare_ms": median(t_bare),
                   "command_ms": median(t_cmd)}
            row["vs_bare"] = ratio(row["sealgate_ms"], row["bare_ms"])
            row["command_vs"] = ratio(row["command_ms"], row["sealgate_ms"])
            rows.append(row)
            say("   %-16s %7s  sealgate %9.2f ms  bare %9.2f ms  command "
                "%9.2f ms" % (title, size_name(size), row["sealgate_ms"],
                              row["bare_ms"], row["command_ms"]))
        for p in list(plain.values()) + [pgp_file, pgp_msg, smime_msg]:
            os.unlink(p)
    return rows


# --------------------------------------------------------------------------
# 3. Peak RSS


def rss(env, pf, daemons, big, small, parallel):
    say("== peak RSS of the milter: 1 x %s, %d x %s at once" % (
        size_name(big), parallel, size_name(small)))
    out, inb = daemons["out"], daemons["in"]
    cases = [
        ("out-openpgp", "%s outbound, OpenPGP encrypt" % size_name(big),
         "out", out, ALICE, CAROL, plain_message(big, ALICE, CAROL), 1,
         ("encrypt", "openpgp")),
        ("out-smime", "%s outbound, S/MIME encrypt" % size_name(big),
         "out", out, ALICE, FRANK, plain_message(big, ALICE, FRANK), 1,
         ("encrypt", "smime")),
        ("in-openpgp", "%s inbound, OpenPGP decrypt" % size_name(big),
         "in", inb, CAROL, BOB, env.inbound_pgp(big), 1,
         ("decrypt", "openpgp")),
        ("in-smime", "%s inbound, S/MIME decrypt" % size_name(big),
         "in", inb, CAROL, BOB, env.inbound_smime(big), 1,
         ("decrypt", "smime")),
        ("par-openpgp", "%d x %s at once, OpenPGP encrypt" % (
            parallel, size_name(small)), "out", out, ALICE, CAROL,
         plain_message(small, ALICE, CAROL), parallel, ("encrypt", "openpgp")),
        ("par-smime", "%d x %s at once, S/MIME encrypt" % (
            parallel, size_name(small)), "out", out, ALICE, FRANK,
         plain_message(small, ALICE, FRANK), parallel, ("encrypt", "smime")),
    ]
    rows = []
    for key, title, listener, daemon, frm, to, data, count, expect in cases:
        path = env.write("rss-%s.eml" % key, data)
        sc = Scenario(key, title, listener, frm, to, path, daemon, expect)
        before = daemon.rss_mb()
        daemon.reset_peak()
        send(pf, sc, count, count, 600)
        peak = daemon.peak_rss_mb()
        os.unlink(path)
        rows.append({"key": key, "title": title, "peak_mb": peak,
                     "before_mb": before, "message_mb": len(data) / MB})
        say("   %-40s peak %7.1f MB" % (title, peak))
    return rows


# --------------------------------------------------------------------------
# Report


def size_name(size):
    if size >= MB:
        return "%g MB" % (size / MB)
    return "%g KB" % (size / KB)


def fmt(v, spec="%.2f"):
    return "–" if v is None else spec % v


TARGETS = [
    # (what, figure, target, at least?)
    ("pass-through vs Postfix alone", ("e2e", "pass", "ratio"), 0.9, True),
    ("S/MIME encrypt vs Postfix alone", ("e2e", "smime", "ratio"), 0.85, True),
    ("OpenPGP encrypt vs Postfix alone", ("e2e", "openpgp", "ratio"), 0.4,
     True),
    ("sealgate CPU per message, pass-through (ms)",
     ("e2e", "pass", "cpu_ms"), 0.5, False),
    ("sealgate CPU per message, S/MIME encrypt (ms)",
     ("e2e", "smime", "cpu_ms"), 1.5, False),
    ("sealgate CPU per message, OpenPGP encrypt (ms)",
     ("e2e", "openpgp", "cpu_ms"), 10, False),
    ("50 MB message, peak RSS outbound (MB)",
     ("rss", ("out-openpgp", "out-smime"), "peak_mb"), 32, False),
    ("50 MB message, peak RSS inbound (MB)",
     ("rss", ("in-openpgp", "in-smime"), "peak_mb"), 64, False),
    ("8 x 5 MB at once, peak RSS (MB)",
     ("rss", ("par-openpgp", "par-smime"), "peak_mb"), 120, False),
]


def target_rows(results):
    rows = []
    for what, (part, keys, field), target, at_least in TARGETS:
        keys = keys if isinstance(keys, tuple) else (keys,)
        vals = [r[field] for r in results[part] if r["key"] in keys and
                r[field] is not None]
        if len(vals) != len(keys):
            value = None
        else:
            value = min(vals) if at_least else max(vals)
        met = None if value is None else (
            value >= target if at_least else value <= target)
        rows.append({"what": what, "value": value, "target": target,
                     "at_least": at_least, "met": met})
    return rows


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(),
            "kernel": platform.release()}


def versions(env):
    text = run([env.bin, "version"]).decode("utf-8", "replace").strip()
    pf = run(["postconf", "-d", "-h", "mail_version"]).decode().strip()
    return text.splitlines() + ["Postfix %s" % pf]


def markdown(results):
    m, p = results["machine"], results["params"]
    L = ["# sealgate benchmark results", "",
         "`make bench` (bench/bench.py%s), %s." % (
             " --quick" if p["quick"] else "", results["date"]), "",
         "- CPU: %s, %d cores; Linux %s" % (m["cpu"], m["cores"],
                                            m["kernel"])]
    L += ["- %s" % v for v in results["versions"]]
    L += ["- load average (1 min) %.1f before, %.1f after (other work on a "
          "shared machine)" % (results["load_before"], results["load_after"]),
          "- every figure is the median of %d runs; ratios are against a "
          "baseline of the same invocation; %.0f s in all" % (
              p["rounds"], results["elapsed_s"]), ""]
    if p.get("reuse"):
        L.insert(2, "End to end with SMTP connections reused "
                 "(smtp-source -d).")
    L += ["## Targets", "", "| what | measured | target | met |",
          "|---|---|---|---|"]
    for t in results["targets"]:
        L.append("| %s | %s | %s %g | %s |" % (
            t["what"], fmt(t["value"]), "≥" if t["at_least"] else "≤",
            t["target"], "–" if t["met"] is None else
            ("yes" if t["met"] else "**no**")))
    L += ["", "## End to end", "",
          "smtp-source → Postfix + sealgate → smtp-sink, 10 KB messages "
          "(%d unless said otherwise), %d sessions (%s), milter on a unix "
          "socket unless said otherwise. CPU: the milter and the processes "
          "it starts (gpg, gpg-agent) per message; Postfix CPU: its master "
          "and all its processes (smtpd, cleanup, qmgr, smtp, ...). Postfix "
          "alone runs right before each scenario with the same count; the "
          "ratio is the median of these pairs. Added latency: the time "
          "sealgate spends in its callbacks per message (`busy=` in its "
          "log), over all messages of all runs." % (
              p["count"], p["sessions"],
              "SMTP connections reused" if p.get("reuse") else
              "one SMTP connection per message"), "",
          "| scenario | messages | msg/s | vs Postfix alone | sealgate CPU "
          "ms/msg | of which in processes it starts | Postfix CPU ms/msg | "
          "added p50 ms | added p99 ms |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in results["e2e"]:
        L.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            r["title"], r["count"], fmt(r["rate"], "%.0f"), fmt(r["ratio"]),
            fmt(r["cpu_ms"]), fmt(r["started_cpu_ms"]),
            fmt(r["postfix_cpu_ms"]), fmt(r["p50_ms"], "%.3f"),
            fmt(r["p99_ms"], "%.3f")))
    L += ["", "## Per operation, in process", "",
          "Milliseconds per message (median). sealgate: what the milter does "
          "for one message (spool, classify, pipeline) in process; bare: the "
          "GPGME or OpenSSL CMS call alone; command: `gpg` or `openssl cms`, "
          "as a script gateway runs it per message.", "",
          "| operation | size | sealgate ms | bare call ms | command ms | "
          "sealgate / bare | command / sealgate |",
          "|---|---|---|---|---|---|---|"]
    for r in results["ops"]:
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            r["op"], size_name(r["size"]), fmt(r["sealgate_ms"]),
            fmt(r["bare_ms"]), fmt(r["command_ms"]), fmt(r["vs_bare"]),
            fmt(r["command_vs"])))
    L += ["", "## Peak RSS of the milter", "",
          "VmHWM of the `sealgate milter` process, reset before each case "
          "(gpg's own memory is not included).", "",
          "| case | message MB | peak RSS MB | RSS before MB |",
          "|---|---|---|---|"]
    for r in results["rss"]:
        L.append("| %s | %.1f | %s | %s |" % (
            r["title"], r["message_mb"], fmt(r["peak_mb"], "%.1f"),
            fmt(r["before_mb"], "%.1f")))
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------


def interrupted(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    # Before tests/lib/postfix.py installs its own handlers (which stop
    # Postfix only): every daemon and directory is cleaned up in finally.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, interrupted)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="the sealgate binary")
    ap.add_argument("--count", type=int, default=2000,
                    help="messages per end-to-end run (default 2000)")
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="small counts and sizes (ctest)")
    ap.add_argument("--out", help="the Markdown report (default "
                    "bench/results/latest.md; none with --quick or a part)")
    ap.add_argument("--json", help="also write the figures as JSON")
    ap.add_argument("--parts", default="e2e,rss,ops",
                    help="what to run (default e2e,rss,ops)")
    ap.add_argument("--scenarios", help="end-to-end scenarios to run "
                    "(keys as in the JSON, e.g. pass,smime; Postfix alone "
                    "always runs)")
    ap.add_argument("--reuse", action="store_true", help="end to end: "
                    "smtp-source -d, messages reuse SMTP connections (and "
                    "so milter connections)")
    ap.add_argument("--perf", metavar="DIR", help="`perf record` the "
                    "milter during each end-to-end scenario's first run, "
                    "into DIR/SCENARIO.data")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: a private Postfix needs root")
    if args.quick:
        args.count = min(args.count, 24)
        args.rounds = min(args.rounds, 2)
        sizes = [4 * KB, 32 * KB, 256 * KB]
        iterations = lambda size: 2                    # noqa: E731
        big, small = 2 * MB, 128 * KB
    else:
        sizes = [4 * KB, 100 * KB, 10 * MB]
        iterations = lambda size: 3 if size >= MB else 15  # noqa: E731
        big, small = 50 * MB, 5 * MB
    partial = args.scenarios or args.reuse or set(args.parts.split(",")) != {
        "e2e", "rss", "ops"}
    out = args.out or (None if args.quick or partial else
                       os.path.join(ROOT, "bench", "results", "latest.md"))
    start = time.monotonic()
    env = Env(args.bin)
    pf = None
    daemons = {}
    try:
        env.import_keys()
        daemons["out"] = Daemon(env, "out", env.policy_out)
        daemons["tcp"] = Daemon(env, "tcp", env.policy_out, unix=False)
        daemons["in"] = Daemon(env, "in", env.policy_in)
        pf = BenchPostfix({name: d.postfix_spec
                           for name, d in daemons.items()})
        results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "load_before": os.getloadavg()[0],
                   "machine": machine(), "versions": versions(env),
                   "params": {"count": args.count, "sessions": args.sessions,
                              "rounds": args.rounds, "quick": args.quick,
                              "reuse": args.reuse}}
        parts = args.parts.split(",")
        results["e2e"] = e2e(env, pf, daemons, args) if "e2e" in parts \
            else []
        results["rss"] = rss(env, pf, daemons, big, small, args.sessions) \
            if "rss" in parts else []
        results["ops"] = ops(env, sizes, iterations) if "ops" in parts \
            else []
        results["targets"] = target_rows(results)
        results["elapsed_s"] = time.monotonic() - start
        results["load_after"] = os.getloadavg()[0]
    except BenchError as e:
        sys.exit("bench: %s" % e)
    finally:
        if pf is not None:
            pf.stop()
        for d in daemons.values():
            d.stop()
        env.cleanup()
    text = markdown(results)
    say("")
    say(text)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
        say("written to %s" % out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
