"""A private Postfix instance and an smtp-sink for milter tests.

Everything lives under one temporary directory in /tmp (config, queue, data,
maillog, sink dumps); the system's Postfix (/etc/postfix) is never touched.

Layout of the instance:

  port         smtpd on 127.0.0.1 with the milter attached (smtpd_milters);
               every recipient reply of the milter goes straight to the client.
  relay_port   smtpd without a milter; everything it accepts is handed (as a
               content_filter) to the inner stage below, so the client of the
               milter is Postfix's own SMTP client -- an MTA that retries a
               recipient that got a 4xx reply in a separate transaction.
  inner_port   smtpd with the milter, fed by relay_port.
  sendmail     `sendmail -C CONFIG_DIR` (pickup) passes the milter through
               non_smtpd_milters.

All mail leaves through relayhost = [127.0.0.1]:sink_port, where smtp-sink
writes each transaction to a file.

    with PrivatePostfix("inet:127.0.0.1:8891") as pf:
        rc, transcript = pf.send_swaks("a@example.com", ["b@x.example"], None)
        msgs = pf.wait_for_sink(1, timeout=30)
        msgs[0].rcpts        # envelope recipients as seen by the sink
        bytes(msgs[0])       # the message as relayed (LF line ends)

Set SEALGATE_KEEP_TMP=1 (or SGTEST_KEEP=1) to keep the instance directory
after the run.
"""

import atexit
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

POSTFIX_USER = "postfix"
SBIN = "/usr/sbin"


def _which(name):
    for d in (SBIN, "/usr/bin", "/usr/lib/postfix/sbin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def missing_tools():
    """Names of the programs this harness needs that are not installed."""
    out = []
    for t in ("postfix", "postconf", "postqueue", "postsuper", "sendmail",
              "smtp-sink", "swaks"):
        if not _which(t):
            out.append(t)
    try:
        pwd.getpwnam(POSTFIX_USER)
    except KeyError:
        out.append("user " + POSTFIX_USER)
    return out


def can_run():
    """(ok, reason): whether a private Postfix can be started here."""
    if os.geteuid() != 0:
        return False, "a private Postfix needs root"
    miss = missing_tools()
    if miss:
        return False, "not installed: " + ", ".join(miss)
    return True, ""


_reserved_ports = set()
_live_instances = []   # PrivatePostfix and MilterProcess objects to stop at exit


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _reserved_ports:
            _reserved_ports.add(port)
            return port
    raise RuntimeError("no free port found")


def port_open(port, host="127.0.0.1", timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(port, timeout=10.0, host="127.0.0.1", proc=None):
    """Wait until something accepts connections on port; False on timeout
    or when proc (a Popen) exits first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if port_open(port, host):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def wait_port_free(port, timeout=10.0, host="127.0.0.1"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not port_open(port, host):
            return True
        time.sleep(0.1)
    return False


class PostfixError(RuntimeError):
    pass


def read_log(path, offset=0):
    """Text of a log file from byte offset on ("" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def file_size(path):
    """Size of a file in bytes (0 when it does not exist)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def tcp_listening(port, host="127.0.0.1"):
    """Whether a socket listens on host:port (from /proc/net/tcp; no
    connection is made, so the listener sees nothing)."""
    want_port = "%04X" % port
    a = socket.inet_aton(host)
    want_host = "%08X" % int.from_bytes(a, "little")
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if len(cols) < 4:
                    continue
                h, _, p = cols[1].partition(":")
                if p == want_port and cols[3] == "0A" and h in (want_host, "00000000"):
                    return True
    except OSError:
        return port_open(port, host)
    return False


def unix_listening(path):
    """Whether a socket listens at path, from /proc/net/unix (without
    connecting, which a milter would take for an MTA)."""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                cols = line.split()
                # Flags 00010000: accepting connections.
                if len(cols) >= 8 and cols[7] == path and \
                        int(cols[3], 16) & 0x10000:
                    return True
    except OSError:
        pass
    return False


class MilterProcess:
    """A milter program run in the foreground, listening on 127.0.0.1:port,
    or on the unix socket at path unix (production's choice).

    argv_fn(spec) returns the command line for the libmilter socket spec
    "inet:PORT@127.0.0.1" (or "unix:PATH"). stderr and stdout go to
    log_path. postfix_spec is what Postfix needs: "inet:127.0.0.1:PORT"
    (or "unix:PATH"). A unix socket is given to Postfix's group once it
    listens; its directory must let the postfix user through.
    """

    def __init__(self, argv_fn, log_path, port=None, env=None, unix=None):
        self.argv_fn = argv_fn
        self.log_path = log_path
        self.env = env
        self.proc = None
        self.unix = unix
        if unix is not None:
            self.port = None
            self.spec = self.postfix_spec = "unix:" + unix
        else:
            self.port = port or free_port()
            self.spec = "inet:%d@127.0.0.1" % self.port
            self.postfix_spec = "inet:127.0.0.1:%d" % self.port
        self._stopped_at = None

    def listening(self):
        if self.unix is None:
            return tcp_listening(self.port)
        return unix_listening(self.unix)

    def _ready(self):
        """Listening, and (a unix socket) writable by Postfix's group."""
        if not self.listening():
            return False
        if self.unix is not None:
            os.chown(self.unix, -1, pwd.getpwnam(POSTFIX_USER).pw_gid)
        return True

    def start(self, timeout=15, attempts=3):
        """Start and wait until it listens. A libmilter program needs a
        moment after SIGTERM before the port can be reused and may exit
        silently if started too early, so a quick exit is retried."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if self._stopped_at is not None:
            wait = 2.0 - (time.monotonic() - self._stopped_at)
            if wait > 0:
                time.sleep(wait)
        last = ""
        for attempt in range(attempts):
            self._wait_unbound(10)
            with open(self.log_path, "ab") as log:
                log.write(b"=== start %s ===\n" % " ".join(
                    self.argv_fn(self.spec)).encode())
                log.flush()
                self.proc = subprocess.Popen(
                    self.argv_fn(self.spec), stdout=log, stderr=log,
                    stdin=subprocess.DEVNULL, env=self.env)
            if self not in _live_instances:
                _live_instances.append(self)
                _install_signal_handlers()
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    break
                if self._ready():
                    return
                time.sleep(0.1)
            if self.proc.poll() is None:
                self.stop()
                raise PostfixError("milter does not listen on %s after %ss:\n%s"
                                   % (self.spec, timeout, self.log_text()))
            last = "exit code %s" % self.proc.returncode
            self.proc = None
            time.sleep(1.5 * (attempt + 1))
        raise PostfixError("milter exited at start (%s):\n%s" % (
            last, self.log_text()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM and wait; SIGKILL if it does not exit. Returns the exit
        code (None if it was not running)."""
        if self in _live_instances:
            _live_instances.remove(self)
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(5)
                with open(self.log_path, "ab") as log:
                    log.write(b"=== killed: no exit %ds after SIGTERM ===\n"
                              % timeout)
        self.proc = None
        self._stopped_at = time.monotonic()
        self._wait_unbound(10)
        return rc

    def _wait_unbound(self, timeout):
        end = time.monotonic() + timeout
        while self.listening() and time.monotonic() < end:
            time.sleep(0.1)

    def log_text(self):
        return read_log(self.log_path)

    def log_size(self):
        return file_size(self.log_path)

    def log_since(self, offset):
        return read_log(self.log_path, offset)


class SinkMessage(bytes):
    """One transaction captured by smtp-sink: the message bytes as relayed
    (smtp-sink's own lines removed; CR already removed by smtp-sink) plus the
    envelope: mail_from (str), rcpts (list of str), path, mail_args and
    rcpt_args (the raw MAIL/RCPT arguments)."""

    def __new__(cls, data, **kw):
        self = super().__new__(cls, data)
        self.path = kw.get("path")
        self.mail_from = kw.get("mail_from")
        self.rcpts = kw.get("rcpts", [])
        self.mail_args = kw.get("mail_args")
        self.rcpt_args = kw.get("rcpt_args", [])
        self.raw = kw.get("raw")
        return self

    def __repr__(self):
        return "<SinkMessage from=%r rcpts=%r %d bytes>" % (
            self.mail_from, self.rcpts, len(self))


_ADDR_RE = re.compile(rb"^(?:(?:FROM|TO):\s*)?<([^>]*)>", re.I)
_SINK_FIELDS = (b"X-Client-Addr:", b"X-Client-Proto:", b"X-Helo-Args:",
                b"X-Mail-Args:", b"X-Rcpt-Args:")


def parse_sink_file(raw, path=None):
    """Split an smtp-sink dump into envelope and message. Returns a
    SinkMessage, or None when the file does not hold a finished DATA phase
    (no smtp-sink Received: header)."""
    lines = raw.split(b"\n")
    i = 0
    mail_args = None
    rcpt_args = []
    while i < len(lines):
        ln = lines[i]
        if not ln.startswith(_SINK_FIELDS):
            break
        name, _, value = ln.partition(b":")
        value = value.strip()
        if name == b"X-Mail-Args":
            mail_args = value
        elif name == b"X-Rcpt-Args":
            rcpt_args.append(value)
        i += 1
    # smtp-sink's own Received: header (folded over several lines) ends the
    # part it generated; it carries "(smtp-sink)".
    if i >= len(lines) or not lines[i].startswith(b"Received:"):
        return None
    j = i + 1
    while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
        j += 1
    received = b"\n".join(lines[i:j])
    if b"(smtp-sink)" not in received:
        return None
    body = b"\n".join(lines[j:])
    # smtp-sink appends one empty line after the message.
    if body.endswith(b"\n\n"):
        body = body[:-1]
    elif body.endswith(b"\n") and body.count(b"\n") == 1 and body == b"\n":
        body = b""

    def addr(v):
        if v is None:
            return None
        m = _ADDR_RE.match(v)
        return m.group(1).decode("utf-8", "replace") if m else v.decode(
            "utf-8", "replace")

    return SinkMessage(body, path=path, mail_from=addr(mail_args),
                       rcpts=[addr(r) for r in rcpt_args],
                       mail_args=mail_args, rcpt_args=rcpt_args, raw=raw)


class SmtpSink:
    """smtp-sink on 127.0.0.1:port dumping each transaction to dump_dir."""

    def __init__(self, dump_dir, port=None, extra_args=()):
        self.dump_dir = dump_dir
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(os.path.dirname(dump_dir) or ".",
                                     "smtp-sink.log")
        self._log = None

    def start(self):
        os.makedirs(self.dump_dir, exist_ok=True)
        pw = pwd.getpwnam(POSTFIX_USER)
        os.chown(self.dump_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dump_dir, 0o755)
        self._log = open(self.log_path, "ab")
        cmd = [_which("smtp-sink"), "-u", POSTFIX_USER, "-t", "60",
               "-d", os.path.join(self.dump_dir, "%M.")] + self.extra_args + [
               "127.0.0.1:%d" % self.port, "64"]
        self.proc = subprocess.Popen(cmd, stdout=self._log,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        if not wait_port(self.port, 10, proc=self.proc):
            self.stop()
            raise PostfixError("smtp-sink did not start on port %d: %s" % (
                self.port, self.log_text()))

    def log_text(self):
        return read_log(self.log_path)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def _open_files(self):
        """Dump files smtp-sink holds open (transactions still running)."""
        out = set()
        if self.proc is None:
            return out
        fddir = "/proc/%d/fd" % self.proc.pid
        try:
            for fd in os.listdir(fddir):
                try:
                    out.add(os.readlink(os.path.join(fddir, fd)))
                except OSError:
                    pass
        except OSError:
            pass
        return out

    def files(self):
        """All dump files, oldest first."""
        out = []
        for root, _dirs, names in os.walk(self.dump_dir):
            for n in names:
                p = os.path.join(root, n)
                try:
                    out.append((os.stat(p).st_mtime_ns, p))
                except OSError:
                    pass
        out.sort()
        return [p for _, p in out]

    def messages(self):
        """Finished transactions, oldest first, as SinkMessage objects."""
        busy = self._open_files()
        msgs = []
        for p in self.files():
            if p in busy:
                continue
            try:
                with open(p, "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            m = parse_sink_file(raw, p)
            if m is not None:
                msgs.append(m)
        return msgs

    def count_files(self):
        return len(self.files())

    def clear(self):
        for p in self.files():
            try:
                os.unlink(p)
            except OSError:
                pass


MAIN_CF = """\
# Private Postfix instance for sealgate tests.
compatibility_level = 3.6
config_directory = {config_dir}
queue_directory = {queue_dir}
data_directory = {data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = {myhostname}
mydomain = sgtest.invalid
myorigin = $myhostname
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mynetworks_style = host
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
local_header_rewrite_clients =
append_dot_mydomain = no
biff = no
readme_directory = no
relayhost = [127.0.0.1]:{sink_port}
smtp_host_lookup = native
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_connect_timeout = 10s
smtp_address_preference = ipv4
smtp_skip_5xx_greeting = no
smtputf8_enable = no
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
in_flow_delay = 0
maillog_file = {maillog}
maillog_file_prefixes = /tmp, /var, /dev/stdout
smtpd_milters = {milter}
non_smtpd_milters = {milter}
milter_default_action = tempfail
milter_protocol = 6
milter_connect_timeout = {milter_connect_timeout}
milter_command_timeout = {milter_command_timeout}
milter_content_timeout = {milter_content_timeout}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
delay_warning_time = 0h
notify_classes =
default_destination_rate_delay = 0s
"""

# Postfix's own services, as every private instance (and the demo's,
# scripts/demo.py) runs them: no chroot.
MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MASTER_CF = """\
# Private Postfix instance for sealgate tests (no chroot).
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{port} inet n - n - - smtpd
127.0.0.1:{relay_port} inet n - n - - smtpd
  -o smtpd_milters=
  -o content_filter=smtp:[127.0.0.1]:{inner_port}
127.0.0.1:{inner_port} inet n - n - - smtpd
  -o myhostname=stage2.sgtest.invalid
  -o content_filter=
""" + MASTER_SERVICES


def _cleanup_all():
    for inst in list(_live_instances):
        try:
            inst.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_cleanup_all)


def _install_signal_handlers():
    def handler(signum, _frame):
        _cleanup_all()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        try:
            if signal.getsignal(s) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(s, handler)
        except (ValueError, OSError):
            pass


class PrivatePostfix:
    """A Postfix instance under a temp dir in /tmp, plus its smtp-sink.

    milter: Postfix syntax, e.g. "inet:127.0.0.1:8891" (None: no milter).
    extra_main: dict of further main.cf settings.
    """

    def __init__(self, milter=None, extra_main=None, base=None,
                 milter_connect_timeout="5s", milter_command_timeout="20s",
                 milter_content_timeout="60s", start=True):
        ok, why = can_run()
        if not ok:
            raise PostfixError(why)
        self.milter = milter or ""
        self.extra_main = dict(extra_main or {})
        self.timeouts = (milter_connect_timeout, milter_command_timeout,
                         milter_content_timeout)
        self.dir = tempfile.mkdtemp(prefix="sgpf.", dir=base or "/tmp")
        os.chmod(self.dir, 0o755)  # the postfix user must search the path
        self.config_dir = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.maillog_path = os.path.join(self.dir, "maillog")
        self.sink = SmtpSink(os.path.join(self.dir, "sink"))
        self.port = free_port()
        self.relay_port = free_port()
        self.inner_port = free_port()
        self.running = False
        self._maillog_mark = 0
        _live_instances.append(self)
        _install_signal_handlers()
        if start:
            try:
                self.start()
            except BaseException:
                self.stop()
                raise

    # -- context manager -------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- setup -----------------------------------------------------------

    def _env(self):
        env = dict(os.environ)
        env["MAIL_CONFIG"] = self.config_dir
        env.pop("MAIL_DEBUG", None)
        return env

    def _run(self, args, check=False, timeout=60, input=None):
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self._env(), timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise PostfixError("%s failed (exit %d):\n%s%s%s" % (
                " ".join(args), p.returncode,
                p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"), self.diagnostics()))
        return p

    def write_config(self):
        os.makedirs(self.config_dir, exist_ok=True)
        os.makedirs(self.queue_dir, exist_ok=True)
        os.chmod(self.queue_dir, 0o755)
        os.makedirs(self.data_dir, exist_ok=True)
        pw = pwd.getpwnam(POSTFIX_USER)
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data_dir, 0o700)
        main = MAIN_CF.format(
            config_dir=self.config_dir, queue_dir=self.queue_dir,
            data_dir=self.data_dir, myhostname="sgtest.sgtest.invalid",
            sink_port=self.sink.port, maillog=self.maillog_path,
            milter=self.milter,
            milter_connect_timeout=self.timeouts[0],
            milter_command_timeout=self.timeouts[1],
            milter_content_timeout=self.timeouts[2])
        # extra_main overrides a default in place (no duplicate entries).
        lines = main.splitlines()
        extra = dict(self.extra_main)
        for i, ln in enumerate(lines):
            key = ln.split("=", 1)[0].strip()
            if "=" in ln and not ln.startswith("#") and key in extra:
                lines[i] = "%s = %s" % (key, extra.pop(key))
        lines += ["%s = %s" % kv for kv in extra.items()]
        main = "\n".join(lines) + "\n"
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            f.write(main)
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port, relay_port=self.relay_port,
                                     inner_port=self.inner_port))

    def postconf_n(self):
        """(exit code, output, stderr) of postconf -c DIR -n; problems in
        the configuration show up as warnings on stderr."""
        p = self._run(["postconf", "-c", self.config_dir, "-n"])
        err = p.stderr.decode("utf-8", "replace")
        return p.returncode, p.stdout.decode("utf-8", "replace") + err, err

    def start(self):
        self.write_config()
        rc, out, err = self.postconf_n()
        if rc != 0 or err.strip():
            raise PostfixError(
                "postconf -c %s -n reports problems (exit %d):\n%s\n"
                "--- postconf -n ---\n%s" % (self.config_dir, rc, err, out))
        self.sink.start()
        for attempt in range(3):
            p = self._run(["postfix", "-c", self.config_dir, "start"], timeout=60)
            if p.returncode == 0 or "Address already in use" not in self.maillog():
                break
            # Another program took one of the ports since free_port():
            # pick new ones and try again.
            self.port = free_port()
            self.relay_port = free_port()
            self.inner_port = free_port()
            with open(self.maillog_path, "a") as f:
                f.write("=== retrying with new ports ===\n")
            self.write_config()
        if p.returncode != 0:
            raise PostfixError("postfix -c %s start failed (exit %d):\n%s%s\n%s"
                               % (self.config_dir, p.returncode,
                                  p.stdout.decode("utf-8", "replace"),
                                  p.stderr.decode("utf-8", "replace"),
                                  self.diagnostics()))
        self.running = True
        for port in (self.port, self.relay_port, self.inner_port):
            if not wait_port(port, 20):
                raise PostfixError("Postfix does not listen on 127.0.0.1:%d"
                                   " after start\n%s" % (port, self.diagnostics()))
        # Wait until the smtpd answers with a greeting (master is up and
        # spawns services).
        self._wait_banner(self.port, 20)

    def set_main(self, **settings):
        """Change main.cf settings (postconf -e) and reload Postfix, e.g.
        set_main(milter_default_action="accept")."""
        args = ["postconf", "-c", self.config_dir, "-e"]
        args += ["%s=%s" % (k, v) for k, v in settings.items()]
        self._run(args, check=True)
        self.extra_main.update(settings)
        if self.running:
            self._run(["postfix", "-c", self.config_dir, "reload"], check=True)
            time.sleep(1)   # master restarts its services lazily

    def _wait_banner(self, port, timeout):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.settimeout(5)
                    data = s.recv(512)
                    if data.startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        return
                    last = data
            except OSError as e:
                last = e
            time.sleep(0.2)
        raise PostfixError("no SMTP greeting on port %d (%r)\n%s" % (
            port, last, self.diagnostics()))

    def diagnostics(self, maillog_lines=80):
        """Text for error messages: postconf -n, maillog tail, sink log."""
        parts = ["--- maillog (last %d lines) %s ---\n%s" % (
            maillog_lines, self.maillog_path,
            "\n".join(self.maillog().splitlines()[-maillog_lines:]))]
        try:
            rc, out, _err = self.postconf_n()
            parts.append("--- postconf -c %s -n (exit %d) ---\n%s" % (
                self.config_dir, rc, out))
        except Exception as e:  # noqa: BLE001
            parts.append("postconf failed: %s" % e)
        parts.append("--- smtp-sink log ---\n%s" % self.sink.log_text())
        return "\n".join(parts)

    def _master_pids(self):
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if ("MAIL_CONFIG=" + self.config_dir).encode() in env:
                pids.append(int(pid))
        return pids

    def stop(self):
        """Stop Postfix and the sink, kill leftovers of this instance and
        remove the directory (unless SEALGATE_KEEP_TMP is set)."""
        if self in _live_instances:
            _live_instances.remove(self)
        if self.running or os.path.isdir(self.config_dir):
            try:
                self._run(["postfix", "-c", self.config_dir, "stop"], timeout=30)
            except Exception:  # noqa: BLE001
                pass
            self.running = False
            # Processes of this instance carry MAIL_CONFIG=<our dir>; kill
            # any that survived the stop, one pid at a time.
            end = time.monotonic() + 5
            pids = self._master_pids()
            while pids and time.monotonic() < end:
                time.sleep(0.2)
                pids = self._master_pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.sink.stop()
        if os.environ.get("SEALGATE_KEEP_TMP") or os.environ.get("SGTEST_KEEP"):
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- logs ------------------------------------------------------------

    def maillog(self):
        return read_log(self.maillog_path)

    def mark_maillog(self):
        """Remember the current end of the maillog (see maillog_since)."""
        self._maillog_mark = file_size(self.maillog_path)

    def maillog_since(self):
        return read_log(self.maillog_path, self._maillog_mark)

    def wait_maillog(self, pattern, timeout=30, since_mark=True):
        """Wait until a maillog line matches the regex; returns the match."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            text = self.maillog_since() if since_mark else self.maillog()
            m = rx.search(text)
            if m:
                return m
            if time.monotonic() >= end:
                return None
            time.sleep(0.2)

    # -- sending ---------------------------------------------------------

    def send_swaks(self, frm, to_list, data=None, port=None, timeout=60,
                   extra_args=(), **headers):
        """Submit with swaks; returns (exit code, transcript text).

        data: bytes/str of the whole message (swaks expands %TOKENS% and
        literal \\n in it), or None for swaks' default message. headers:
        Header_Name="value" pairs (underscores become dashes) added with
        --header. port defaults to the milter-facing smtpd.
        """
        if isinstance(to_list, str):
            to_list = [to_list]
        cmd = [_which("swaks"), "--server", "127.0.0.1",
               "--port", str(port or self.port), "--from", frm,
               "--to", ",".join(to_list), "--helo", "client.sgtest.invalid",
               "--timeout", "%ds" % timeout]
        tmp = None
        if data is not None:
            if isinstance(data, str):
                data = data.encode()
            # swaks ends the data with CRLF "." CRLF itself: without this,
            # a message ending in a line break would gain an empty line.
            if data.endswith(b"\r\n"):
                data = data[:-2]
            elif data.endswith(b"\n"):
                data = data[:-1]
            fd, tmp = tempfile.mkstemp(prefix="swaks.", dir=self.dir)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            cmd += ["--data", "@" + tmp]
        for k, v in headers.items():
            cmd += ["--header", "%s: %s" % (k.replace("_", "-"), v)]
        cmd += list(extra_args)
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=timeout + 30,
                               stdin=subprocess.DEVNULL)
        finally:
            if tmp:
                os.unlink(tmp)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def send_smtplib(self, frm, to_list, data, port=None, timeout=60):
        """Send exact bytes with smtplib. Returns (code, text, refused)
        where code/text is the reply to the end of DATA (or to the
        failing command) and refused maps each rejected recipient to
        (code, text). Never raises for SMTP-level rejections."""
        if isinstance(to_list, str):
            to_list = [to_list]
        if isinstance(data, str):
            data = data.encode()
        s = smtplib.SMTP("127.0.0.1", port or self.port,
                         local_hostname="client.sgtest.invalid",
                         timeout=timeout)
        try:
            s.ehlo()
            code, resp = s.mail(frm)
            if code != 250:
                s.rset()
                return code, resp.decode("utf-8", "replace"), {}
            refused = {}
            for r in to_list:
                code, resp = s.rcpt(r)
                if code not in (250, 251):
                    refused[r] = (code, resp.decode("utf-8", "replace"))
            if len(refused) == len(to_list):
                s.rset()
                return 554, "no valid recipients", refused
            data = re.sub(rb"(?<!\r)\n", b"\r\n", data)
            code, resp = s.data(data)
            return code, resp.decode("utf-8", "replace"), refused
        finally:
            try:
                s.quit()
            except smtplib.SMTPException:
                s.close()
            except OSError:
                s.close()

    def sendmail(self, frm, to_list, data, timeout=60):
        """Submit through Postfix's sendmail -C (pickup, non_smtpd_milters).
        Returns (exit code, output text)."""
        if isinstance(to_list, str):
            to_list = [to_list]
        if isinstance(data, str):
            data = data.encode()
        p = self._run([_which("sendmail"), "-C", self.config_dir, "-i",
                       "-f", frm, "--"] + list(to_list), input=data,
                      timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    # -- queue -----------------------------------------------------------

    def queue(self):
        """Queue entries as dicts from `postqueue -j` (queue_name,
        queue_id, sender, recipients [{address, delay_reason}], ...)."""
        p = self._run(["postqueue", "-c", self.config_dir, "-j"])
        out = []
        for line in p.stdout.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def queue_ids(self):
        return [e.get("queue_id") for e in self.queue()]

    def maildrop_files(self):
        d = os.path.join(self.queue_dir, "maildrop")
        try:
            return sorted(os.listdir(d))
        except OSError:
            return []

    def purge_queue(self):
        """Delete every queued message (postsuper -d ALL) and the maildrop."""
        self._run(["postsuper", "-c", self.config_dir, "-d", "ALL"])
        for name in self.maildrop_files():
            try:
                os.unlink(os.path.join(self.queue_dir, "maildrop", name))
            except OSError:
                pass

    def postqueue_p(self):
        p = self._run(["postqueue", "-c", self.config_dir, "-p"])
        return (p.stdout + p.stderr).decode("utf-8", "replace")

    def flush(self):
        """postqueue -f: deliver deferred mail now (also wakes pickup)."""
        return self._run(["postqueue", "-c", self.config_dir, "-f"]).returncode

    def wait_queue_empty(self, timeout=30):
        end = time.monotonic() + timeout
        while True:
            if not self.queue() and not self.maildrop_files():
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.25)

    def wait_queued(self, n=1, timeout=30):
        """Wait until at least n messages sit in the queue; returns them."""
        end = time.monotonic() + timeout
        while True:
            q = self.queue()
            if len(q) >= n:
                return q
            if time.monotonic() >= end:
                return q
            time.sleep(0.25)

    # -- sink ------------------------------------------------------------

    def sink_messages(self):
        return self.sink.messages()

    def wait_for_sink(self, n, timeout=30, settle=0.0):
        """Wait until the sink holds at least n finished transactions and
        return them all (oldest first). Raises PostfixError with the
        maillog on timeout. settle: extra seconds to wait afterwards, for
        checking that no more than n arrive."""
        end = time.monotonic() + timeout
        while True:
            msgs = self.sink.messages()
            if len(msgs) >= n:
                break
            if time.monotonic() >= end:
                raise PostfixError(
                    "sink holds %d message(s) after %ss, expected %d\n"
                    "--- postqueue -p ---\n%s\n%s" % (
                        len(msgs), timeout, n, self.postqueue_p(),
                        self.diagnostics()))
            time.sleep(0.2)
        if settle:
            time.sleep(settle)
            msgs = self.sink.messages()
        return msgs
