#!/usr/bin/env python3
"""The sealgate demo: a private Postfix with the gateway attached.

    demo.py run  --bin SEALGATE --policy POLICY --dir DIR   (make run)
    demo.py send --bin SEALGATE --policy POLICY --dir DIR   (make demo)

`run` imports the example keys (keys-example/, NOT FOR PRODUCTION) into the
policy's keystore, starts `sealgate milter`, a private Postfix instance
(config, queue and log under DIR; the system's Postfix is not touched)
listening on 127.0.0.1:2525, an SMTP sink that writes every message Postfix
delivers as a file into DIR/mail, and a SASL login service for the demo
users. It prints what to try, then runs until Ctrl-C, which stops all of it.

`send` sends the demo's messages to the running demo (or starts one for the
run) and prints one line per message: what was sent, what the gateway
decided (from its log), and what arrived, checked with gpg and openssl.

Needs root (Postfix's master runs as root) and the Debian packages postfix
and swaks (`make deps`).
"""

import argparse
import email
import email.policy
import email.utils
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import socketserver
import stat
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from postfix import MASTER_SERVICES  # noqa: E402  (after sys.path)
from saslauth import DovecotAuthServer  # noqa: E402

KEYS = os.path.join(ROOT, "keys-example")
PGP = os.path.join(KEYS, "openpgp")
SMIME = os.path.join(KEYS, "smime")
# What the demo's gateway holds (keys-example/README.md): the example CA as
# the trust anchor S/MIME certificates must chain to; the partners' public
# keys and certificate; the internal users' OpenPGP secret keys and PKCS#12
# files (empty password).
ANCHOR = os.path.join(SMIME, "ca.pem")
IMPORTS = [os.path.join(PGP, n) for n in (
    "carol.pub.asc", "dave.pub.asc", "erin.pub.asc", "alice.sec.asc",
    "bob.sec.asc")] + [os.path.join(SMIME, n) for n in (
        "frank.pem", "alice.p12", "bob.p12")]
LOGINS = {"alice": "alice-demo", "bob": "bob-demo"}
POSTFIX_USER = "postfix"
POSTFIX_DAEMONS = "/usr/lib/postfix/sbin/"     # master, smtpd, qmgr, ...
STATE = "demo.json"

MAIN_CF = """\
# Private Postfix instance of the sealgate demo.
compatibility_level = 3.6
config_directory = {etc}
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = demo.sealgate.invalid
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
relayhost = [127.0.0.1]:{sink_port}
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {auth}
smtputf8_enable = no
maillog_file = {maillog}
maillog_file_prefixes = {pf}
smtpd_milters = {milter}
non_smtpd_milters = {milter}
milter_default_action = tempfail
milter_protocol = 6
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
delay_warning_time = 0h
notify_classes =
"""

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{port} inet n - n - - smtpd
""" + MASTER_SERVICES


class DemoError(Exception):
    pass


def say(text=""):
    print(text, flush=True)


def run(argv, check=True, input=None):
    """Runs a command; its output as a CompletedProcess (bytes)."""
    if input is None:
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=120)
    else:
        cp = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=120)
    if check and cp.returncode != 0:
        raise DemoError("%s failed (exit %d): %s" % (
            " ".join(argv), cp.returncode,
            cp.stderr.decode("utf-8", "replace").strip()))
    return cp


def policy_path(policy, key):
    """The path a policy's gateway key names (a quoted or plain scalar),
    relative to the policy file; the demo's policies write it that way."""
    with open(policy) as f:
        m = re.search(r"^\s+%s:\s*\"?([^\"#\n]+?)\"?\s*(#.*)?$" % key,
                      f.read(), re.M)
    if m is None:
        raise DemoError("%s: no gateway.%s" % (policy, key))
    return os.path.join(os.path.dirname(policy), m.group(1))


def reachable(path, pw):
    """Whether the user of pw may search every directory down to path."""
    groups = {g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem}
    groups.add(pw.pw_gid)
    while True:
        st = os.stat(path)
        if st.st_uid == pw.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


def dir_problem(st, path, what):
    """Why a directory the demo trusts (as root) is unsafe, or None: it must
    be owned by root or the effective user and not writable by others unless
    sticky (like /tmp)."""
    if st.st_uid not in (0, os.geteuid()):
        return "%s %s is owned by uid %d" % (what, path, st.st_uid)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and \
            not st.st_mode & stat.S_ISVTX:
        return "%s %s is writable by group or others" % (what, path)
    return None


def check_parents(path, parent):
    """DemoError unless parent and every directory above it is safe
    (dir_problem): otherwise someone else could swap path, below them, for
    another directory."""
    parent = os.path.realpath(parent)
    while True:
        why = dir_problem(os.stat(parent), parent, "its parent")
        if why is not None:
            raise DemoError("refusing %s as the demo's directory: %s"
                            % (path, why))
        if parent == "/":
            return
        parent = os.path.dirname(parent)


def check_dir(path):
    """Creates path when missing; DemoError unless it is a real directory
    (not a symlink) owned by the effective user, writable only by it, and
    its parents are safe (check_parents). The demo runs as root and deletes
    and writes files in it."""
    if not os.path.lexists(path):
        ancestor = os.path.dirname(path)
        while not os.path.lexists(ancestor):
            ancestor = os.path.dirname(ancestor)
        check_parents(path, ancestor)
        os.makedirs(path, 0o755, exist_ok=True)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        why = "it is a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        why = "it is not a directory"
    elif st.st_uid != os.geteuid():
        why = "it is owned by uid %d, not %d" % (st.st_uid, os.geteuid())
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        why = "it is writable by group or others"
    else:
        check_parents(path, os.path.dirname(path))
        return
    raise DemoError("refusing %s as the demo's directory: %s" % (path, why))


def remove(path):
    """Removes path, a file, a symbolic link or a directory tree, without
    following symbolic links."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def create(path, mode="w", perm=0o644):
    """A new file at path, opened for writing; whatever was there before is
    removed first, and a symbolic link planted in between is not followed
    (O_NOFOLLOW|O_EXCL)."""
    remove(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                 os.O_CLOEXEC, perm)
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, newline="")


def port_in_use(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what, cond, timeout=30.0):
    """Waits until cond() is true; DemoError naming what after timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise DemoError("timed out waiting for " + what)
        time.sleep(0.05)


# --------------------------------------------------------------------------
# The sink: every message Postfix delivers, as a file

# The sink's limits: any local user can reach it. DATA above MAX_DATA (more
# than the example policy's max_message_size of 50M) is refused with 552.
MAX_LINE = 4096             # a command line
MAX_DATA_LINE = 64 * 1024   # read at a time in DATA
MAX_DATA = 64 * 1024 * 1024
MAX_RCPTS = 1000
MAX_NAME_RCPT = 64          # of a recipient in a file name
TIMEOUT = 300               # seconds of silence before the sink hangs up


class SinkHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for Postfix's client: EHLO, MAIL, RCPT, DATA."""

    timeout = TIMEOUT

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self):
        try:
            self.session()
        except OSError:         # the client went away, or timed out
            pass

    def session(self):
        self.reply("220 sink.sealgate.invalid ESMTP")
        sender, rcpts = None, []
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            if not line.endswith(b"\n") and len(line) == MAX_LINE:
                while line and not line.endswith(b"\n"):
                    line = self.rfile.readline(MAX_LINE)
                self.reply("500 5.5.2 Line too long")
                continue
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.reply("250-sink.sealgate.invalid\r\n250-8BITMIME\r\n"
                           "250 SIZE %d" % MAX_DATA)
            elif verb == b"MAIL":
                sender, rcpts = address(line), []
                self.reply("250 2.1.0 Ok")
            elif verb == b"RCPT":
                if len(rcpts) >= MAX_RCPTS:
                    self.reply("452 4.5.3 Too many recipients")
                    continue
                rcpts.append(address(line))
                self.reply("250 2.1.5 Ok")
            elif verb == b"DATA" and (sender is None or not rcpts):
                self.reply("503 5.5.1 Need MAIL and RCPT first")
            elif verb == b"DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = self.read_data()
                if data is None:
                    self.reply("552 5.3.4 Message too big (more than %d "
                               "bytes)" % MAX_DATA)
                    continue
                try:
                    self.server.deliver(sender, rcpts, data)
                except OSError as e:
                    self.reply("451 4.3.0 Cannot write the message: %s"
                               % e.strerror)
                    continue
                self.reply("250 2.0.0 Ok: delivered")
            elif verb == b"QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:               # RSET, NOOP
                self.reply("250 2.0.0 Ok")

    def read_data(self):
        """The message up to the line ".", unstuffed, with LF line ends;
        None when it has more than MAX_DATA bytes (the rest is read and
        discarded)."""
        chunks, size, at_start = [], 0, True
        while True:
            line = self.rfile.readline(MAX_DATA_LINE)
            if not line:
                raise ConnectionError("connection closed in DATA")
            if at_start and line in (b".\r\n", b".\n"):
                return None if chunks is None else b"".join(chunks)
            if at_start and line.startswith(b"."):
                line = line[1:]
            at_start = line.endswith(b"\n")
            size += len(line)
            if chunks is None:
                continue
            if size > MAX_DATA:
                chunks = None
                continue
            if line.endswith(b"\r\n"):
                line = line[:-2] + b"\n"
            chunks.append(line)


def address(line):
    m = re.search(rb"<([^>]*)>", line)
    return m.group(1).decode("utf-8", "replace") if m else ""


def delivered_files(mail_dir):
    """The names of the messages the sink has written (not the one it is
    writing), oldest first."""
    return sorted(n for n in os.listdir(mail_dir)
                  if n.endswith(".eml") and not n.startswith("."))


class Sink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mail_dir):
        super().__init__(("127.0.0.1", 0), SinkHandler)
        self.mail_dir = mail_dir
        self.lock = threading.Lock()

    def deliver(self, sender, rcpts, data):
        """Writes the message as DIR/NNN-RCPT.eml, whole or not at all;
        RCPT is the first recipient, cut to MAX_NAME_RCPT characters. An
        existing file is never replaced."""
        rcpt = re.sub(r"[^A-Za-z0-9@._-]", "_", rcpts[0] if rcpts else "none")
        rcpt = rcpt[:MAX_NAME_RCPT]
        with self.lock:
            n = len(delivered_files(self.mail_dir)) + 1
            tmp = os.path.join(self.mail_dir, ".%03d-%s.eml" % (n, rcpt))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                         os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(b"Return-Path: <%s>\nDelivered-To: %s\n" % (
                        sender.encode(), ", ".join(rcpts).encode()) + data)
                while True:
                    name = os.path.join(self.mail_dir, "%03d-%s.eml" % (n, rcpt))
                    try:
                        os.link(tmp, name)
                        break
                    except FileExistsError:
                        n += 1
            finally:
                os.unlink(tmp)


# --------------------------------------------------------------------------
# The parts of a running demo

class Demo:
    def __init__(self, args):
        self.bin = os.path.abspath(args.bin)
        self.policy = os.path.abspath(args.policy)
        self.dir = os.path.abspath(args.dir)
        self.port = args.port
        self.milter_port = args.milter_port
        self.mail = os.path.join(self.dir, "mail")
        self.pf = None              # the Postfix instance (prepare_dir)
        self.pf_outside = False
        self.milter_log = os.path.join(self.dir, "milter.log")
        self.inbound = os.path.join(self.dir, "inbound-to-alice.eml")
        self.milter = None
        self.sink = None
        self.auth = None
        self.postfix_started = False
        self.keystore_home = None
        self.started = False

    # -- start -------------------------------------------------------------

    def start(self, echo_log):
        if os.geteuid() != 0:
            raise DemoError("the demo's private Postfix needs root "
                            "(its master process runs as root)")
        for tool in ("postfix", "postconf", "swaks", "gpg", "openssl"):
            if shutil.which(tool) is None and not os.access(
                    "/usr/sbin/" + tool, os.X_OK):
                raise DemoError("%s is not installed (run 'make deps')" % tool)
        for port, what in ((self.port, "SMTP"), (self.milter_port, "milter")):
            if port_in_use(port):
                raise DemoError("127.0.0.1:%d (%s) is in use: another demo "
                                "running? Stop it, or choose another port"
                                % (port, what))
        check_dir(self.dir)
        self.started = True
        self.prepare_dir()
        self.import_keys()
        self.make_inbound_message()
        self.start_milter(echo_log)
        self.sink = Sink(self.mail)
        threading.Thread(target=self.sink.serve_forever, daemon=True).start()
        self.auth = DovecotAuthServer(os.path.join(self.pf, "auth"), LOGINS)
        self.start_postfix()
        with create(os.path.join(self.dir, STATE), perm=0o600) as f:
            json.dump({"pid": os.getpid(), "port": self.port}, f)

    def prepare_dir(self):
        """DIR with a fresh Postfix instance and an empty mail directory.
        Only what the demo itself puts in DIR is removed (check_dir has
        made sure DIR is the effective user's own). The instance goes
        under /tmp when the postfix user cannot reach DIR (a checkout in
        /root, mode 0700): Postfix's own processes open files in it."""
        for name in ("mail", "postfix", STATE, "milter.log",
                     "inbound-to-alice.eml"):
            remove(os.path.join(self.dir, name))
        os.mkdir(self.mail, 0o755)
        pw = pwd.getpwnam(POSTFIX_USER)
        if reachable(self.dir, pw):
            self.pf = os.path.join(self.dir, "postfix")
            os.mkdir(self.pf, 0o755)
        else:
            self.pf = tempfile.mkdtemp(prefix="sealgate-demo.", dir="/tmp")
            self.pf_outside = True
            say("== the postfix user cannot reach %s: the demo's Postfix "
                "instance is in %s" % (self.dir, self.pf))
        os.chmod(self.pf, 0o755)
        for sub in ("etc", "queue", "data"):
            os.makedirs(os.path.join(self.pf, sub))
        os.chmod(os.path.join(self.pf, "queue"), 0o755)
        data = os.path.join(self.pf, "data")
        os.chown(data, pw.pw_uid, pw.pw_gid)
        os.chmod(data, 0o700)

    def sealgate(self, *args, check=True):
        return run([self.bin] + list(args), check=check)

    def import_keys(self):
        say("== importing the example keys (keys-example/, NOT FOR PRODUCTION)")
        for args in (["--trust-anchor", ANCHOR], IMPORTS):
            cp = self.sealgate("keys", "-c", self.policy, "import", *args)
            sys.stdout.write(cp.stdout.decode("utf-8", "replace"))
        self.keystore_home = os.path.join(policy_path(self.policy, "keystore"),
                                          "openpgp")
        spool = policy_path(self.policy, "spool_dir")
        if not os.path.isdir(spool):
            os.mkdir(spool, 0o700)

    def make_inbound_message(self):
        """A PGP/MIME message from carol, encrypted to alice's public key:
        what a partner sends in."""
        home = tempfile.mkdtemp(prefix="sgdemo.", dir="/tmp")
        try:
            gpg = ["gpg", "--homedir", home, "--batch", "--no-tty",
                   "--trust-model", "always"]
            run(gpg + ["--import", os.path.join(PGP, "alice.pub.asc")])
            body = ("Content-Type: text/plain; charset=utf-8\r\n\r\n"
                    "Hello Alice,\r\n\r\nthe signed contract is attached "
                    "to our portal.\r\n\r\nCarol\r\n")
            enc = run(gpg + ["--armor", "--encrypt", "-r", "alice@example.com"],
                      input=body.encode()).stdout.decode()
        finally:
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(home, ignore_errors=True)
        boundary = "sealgate-demo-inbound"
        msg = ("From: Carol Partner <carol@partner.example>\r\n"
               "To: Alice Example <alice@example.com>\r\n"
               "Subject: Contract\r\n"
               "Date: %s\r\n"
               "Message-Id: <inbound.%d@partner.example>\r\n"
               "MIME-Version: 1.0\r\n"
               "Content-Type: multipart/encrypted; "
               "protocol=\"application/pgp-encrypted\"; boundary=\"%s\"\r\n"
               "\r\n--%s\r\nContent-Type: application/pgp-encrypted\r\n\r\n"
               "Version: 1\r\n\r\n--%s\r\n"
               "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
               "\r\n%s\r\n--%s--\r\n") % (
                   email.utils.formatdate(localtime=False), os.getpid(),
                   boundary, boundary, boundary,
                   enc.replace("\n", "\r\n").rstrip("\r\n"), boundary)
        with create(self.inbound) as f:
            f.write(msg)

    def start_milter(self, echo_log):
        """sealgate milter, its log in DIR/milter.log (and on the terminal
        when echo_log)."""
        log = create(self.milter_log, "wb")
        self.milter = subprocess.Popen(
            [self.bin, "milter", "-c", self.policy, "-f",
             "-s", "inet:%d@127.0.0.1" % self.milter_port,
             # The demo's keystore is root's (the demo runs as root).
             "-u", pwd.getpwuid(os.geteuid()).pw_name],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)

        def pump():
            for line in self.milter.stdout:
                log.write(line)
                log.flush()
                if echo_log:
                    sys.stdout.write("  sealgate: " +
                                     line.decode("utf-8", "replace"))
                    sys.stdout.flush()
            log.close()

        threading.Thread(target=pump, daemon=True).start()
        wait_for("sealgate milter to listen on 127.0.0.1:%d" % self.milter_port,
                 lambda: port_in_use(self.milter_port) or
                 self.milter.poll() is not None)
        if self.milter.poll() is not None:
            raise DemoError("sealgate milter stopped (exit %d); its log: %s"
                            % (self.milter.returncode, self.milter_log))

    def postfix(self, *args, check=True):
        return run(["postfix", "-c", os.path.join(self.pf, "etc")] +
                   list(args), check=check)

    def start_postfix(self):
        etc = os.path.join(self.pf, "etc")
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(
                etc=etc, queue=os.path.join(self.pf, "queue"),
                data=os.path.join(self.pf, "data"), pf=self.pf,
                sink_port=self.sink.server_address[1], auth=self.auth.path,
                maillog=os.path.join(self.pf, "maillog"),
                milter="inet:127.0.0.1:%d" % self.milter_port))
        with open(os.path.join(etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        self.postfix("check")
        # Set before: a Ctrl-C during `postfix start` may leave its master
        # running, and stop() must then stop it.
        self.postfix_started = True
        self.postfix("start")
        wait_for("Postfix to listen on 127.0.0.1:%d" % self.port,
                 lambda: port_in_use(self.port))

    # -- stop --------------------------------------------------------------

    def master_pid(self):
        """The pid in the instance's queue/pid/master.pid, or None."""
        try:
            with open(os.path.join(self.pf, "queue", "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def postfix_processes(self, master):
        """PIDs of the instance's Postfix processes: those running a Postfix
        daemon program (POSTFIX_DAEMONS) that are master, its children, or
        work in the instance's queue directory. Another user's process
        there is none of them."""
        queue = os.path.join(self.pf, "queue")
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                exe = os.readlink("/proc/%s/exe" % pid)
                cwd = os.readlink("/proc/%s/cwd" % pid)
                with open("/proc/%s/stat" % pid) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if not exe.startswith(POSTFIX_DAEMONS):
                continue
            if int(pid) == master or ppid == master or cwd == queue or \
                    cwd.startswith(queue + "/"):
                out.append(int(pid))
        return out

    def stop_postfix(self):
        if not self.postfix_started:
            return
        master = self.master_pid()
        self.postfix("stop", check=False)
        try:
            wait_for("Postfix to stop",
                     lambda: not self.postfix_processes(master))
        except DemoError:
            left = self.postfix_processes(master)
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            wait_for("Postfix's processes to be killed",
                     lambda: not self.postfix_processes(master), timeout=10)
            self.postfix_started = False
            raise DemoError("Postfix did not stop by itself; killed %s"
                            % " ".join(map(str, left)))
        self.postfix_started = False

    def remove_outside_instance(self):
        if self.pf_outside and not self.postfix_started:
            shutil.rmtree(self.pf)
            self.pf_outside = False

    def stop_milter(self):
        if self.milter is not None and self.milter.poll() is None:
            self.milter.terminate()
            try:
                self.milter.wait(30)
            except subprocess.TimeoutExpired:
                self.milter.kill()
                self.milter.wait()

    def stop_sink(self):
        if self.sink is not None:
            self.sink.shutdown()
            self.sink.server_close()
            self.sink = None

    def stop_auth(self):
        if self.auth is not None:
            self.auth.close()
            self.auth = None

    def stop_agent(self):
        if self.keystore_home is not None and os.path.isdir(self.keystore_home):
            run(["gpgconf", "--homedir", self.keystore_home, "--kill", "all"],
                check=False)
            sock = os.path.join(self.keystore_home, "S.gpg-agent")
            wait_for("the keystore's gpg-agent to stop",
                     lambda: not os.path.exists(sock))

    def remove_state(self):
        state = os.path.join(self.dir, STATE)
        if self.started and os.path.lexists(state):
            os.unlink(state)

    def stop(self):
        """Stops Postfix, the milter, the sink, the login service and the
        keystore's gpg-agent, and waits until each is gone. Each step runs
        even when one before it failed; the failures, as a list of texts
        (empty when all went well)."""
        failures = []
        for what, step in (("Postfix", self.stop_postfix),
                           ("Postfix's instance", self.remove_outside_instance),
                           ("the milter", self.stop_milter),
                           ("the sink", self.stop_sink),
                           ("the login service", self.stop_auth),
                           ("the keystore's gpg-agent", self.stop_agent),
                           ("demo.json", self.remove_state)):
            try:
                step()
            except Exception as e:      # the next steps run all the same
                failures.append("stopping %s: %s" % (what, e))
        return failures

    # -- what to try -------------------------------------------------------

    def print_intro(self):
        rel = self.inbound
        server = "swaks --server 127.0.0.1:%d" % self.port
        auth = "--auth PLAIN --auth-user alice --auth-password %s" % LOGINS["alice"]
        say("""
sealgate demo: SMTP 127.0.0.1:{port}, delivered mail in {mail}

Try, in another terminal (each delivered message becomes a file there):

  # OpenPGP: a partner with an OpenPGP key gets encrypted mail
  {server} {auth} --from alice@example.com --to carol@partner.example --header "Subject: Quarterly figures"

  # S/MIME: the policy sends smime.example S/MIME (frank has a certificate)
  {server} {auth} --from alice@example.com --to frank@smime.example --header "Subject: Offer"

  # [secure] in the Subject makes encryption mandatory: no key, refused with 550
  {server} {auth} --from alice@example.com --to zoe@nokey.example --header "Subject: [secure] Salaries"

  # Signed (rule signed-list): alice logs in, so the gateway signs as alice
  {server} {auth} --from alice@example.com --to team@lists.example --header "Subject: Release notes"

  # Inbound: carol's message encrypted to alice arrives decrypted
  {server} --from carol@partner.example --to alice@example.com --data @{rel}

Or let 'make demo' send them all and check what arrived.

Look at a delivered file, and decrypt it with the example keys
(keys-example/README.md):

  less {mail}/001-carol@partner.example.eml
  openssl cms -decrypt -in {mail}/002-frank@smime.example.eml \\
      -inkey keys-example/smime/frank.key -recip keys-example/smime/frank.pem

== For a real Postfix: add to main.cf, then 'postfix reload'

  smtpd_milters = inet:127.0.0.1:8891
  non_smtpd_milters = inet:127.0.0.1:8891
  milter_default_action = tempfail
  milter_protocol = 6

tempfail makes Postfix keep mail (and retry) while the gateway is down;
never use 'accept', which would send mail in clear.

== The gateway's log (Ctrl-C stops the gateway, Postfix and the sink)
""".format(port=self.port, mail=self.mail, server=server, auth=auth, rel=rel))


# --------------------------------------------------------------------------
# make demo: the sends, checked

class Send:
    def __init__(self, name, sender, rcpt, subject, login, check, data=None):
        self.name, self.sender, self.rcpt = name, sender, rcpt
        self.subject, self.login, self.check, self.data = (
            subject, login, check, data)


def gpg_home(tmp, *keys):
    home = tempfile.mkdtemp(prefix="g.", dir=tmp)
    gpg = ["gpg", "--homedir", home, "--batch", "--no-tty",
           "--trust-model", "always", "--pinentry-mode", "loopback",
           "--passphrase", ""]
    run(gpg + ["--import"] + [os.path.join(PGP, k) for k in keys])
    return gpg


def parts(raw):
    """(message, list of its parts' raw bytes with CRLF line ends)."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    boundary = msg.get_boundary()
    if boundary is None:
        return msg, []
    body = raw.split(b"\n\n", 1)[1].replace(b"\r\n", b"\n")
    out = []
    for chunk in body.split(b"\n--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        out.append(chunk.split(b"\n", 1)[1].replace(b"\n", b"\r\n"))
    return msg, out


def decrypts(raw, marker, types, argv, what):
    """Whether raw is of one of types and argv decrypts it to a text with
    marker; (ok, what arrived)."""
    msg, _ = parts(raw)
    if msg.get_content_type() not in types:
        return False, "not encrypted (%s)" % msg.get_content_type()
    cp = run(argv, check=False, input=raw)
    if cp.returncode != 0 or marker.encode() not in cp.stdout:
        return False, "it does not decrypt: " + what
    return True, what


def check_openpgp(raw, marker, tmp):
    return decrypts(raw, marker, ("multipart/encrypted",),
                    gpg_home(tmp, "carol.sec.asc") + ["--decrypt"],
                    "encrypted (openpgp); gpg decrypts it with carol's key")


def check_smime(raw, marker, tmp):
    return decrypts(raw, marker, ("application/pkcs7-mime",
                                  "application/x-pkcs7-mime"),
                    ["openssl", "cms", "-decrypt",
                     "-inkey", os.path.join(SMIME, "frank.key"),
                     "-recip", os.path.join(SMIME, "frank.pem")],
                    "encrypted (smime); openssl decrypts it with frank's key")


def check_signed(raw, marker, tmp):
    msg, body = parts(raw)
    if msg.get_content_type() != "multipart/signed" or len(body) != 2:
        return False, "not signed (%s)" % msg.get_content_type()
    if msg.get_param("protocol") != "application/pgp-signature":
        return False, "signed with %s" % msg.get_param("protocol")
    sig = os.path.join(tmp, "sig.asc")
    with open(sig, "wb") as f:
        f.write(body[1].split(b"\r\n\r\n", 1)[1])
    cp = run(gpg_home(tmp, "alice.pub.asc") + ["--status-fd", "1",
                                                "--verify", sig, "-"],
             check=False, input=body[0])
    if cp.returncode != 0 or b"[GNUPG:] GOODSIG" not in cp.stdout or \
            marker.encode() not in body[0]:
        return False, "gpg does not verify alice's signature"
    return True, "signed (openpgp); gpg verifies alice's signature"


def check_decrypted(raw, marker, tmp):
    msg, _ = parts(raw)
    if msg.get_content_type() == "multipart/encrypted" or \
            b"Hello Alice" not in raw:
        return False, "still encrypted"
    return True, "decrypted (%s)" % (msg.get("X-Sealgate-Decrypted") or "?")


SENDS = [
    Send("openpgp", "alice@example.com", "carol@partner.example",
         "Quarterly figures", "alice", check_openpgp),
    Send("smime", "alice@example.com", "frank@smime.example", "Offer",
         "alice", check_smime),
    Send("[secure]", "alice@example.com", "zoe@nokey.example",
         "[secure] Salaries", "alice", None),
    Send("signed", "alice@example.com", "team@lists.example",
         "Release notes", "alice", check_signed),
    Send("inbound", "carol@partner.example", "alice@example.com", None, None,
         check_decrypted, data=True),
]


def find_delivered(mail_dir, msgid):
    for name in delivered_files(mail_dir):
        with open(os.path.join(mail_dir, name), "rb") as f:
            raw = f.read()
        if msgid.encode() in raw.split(b"\n\n", 1)[0]:
            return name, raw
    return None, None


def decision(log_path, qid):
    """What the gateway's log says it did with queue id qid."""
    if qid is None:
        return None
    with open(log_path, "rb") as f:
        for line in f.read().decode("utf-8", "replace").splitlines():
            if qid in line and "verdict=" in line:
                fields = dict(re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", line))
                text = fields.get("verdict", "?")
                if fields.get("action") not in (None, "-", "none"):
                    text = fields["action"]
                if fields.get("method") not in (None, "-"):
                    text += " " + fields["method"]
                if fields.get("rule") not in (None, "-"):
                    text += " (rule %s)" % fields["rule"]
                return text
    return None


ROW = "%-9s %-44s %-35s %s"


def send_all(state):
    """Sends SENDS to the running demo; prints the table; True when every
    message got what the demo promises."""
    token = "%d.%d" % (os.getpid(), int(time.time()))
    tmp = tempfile.mkdtemp(prefix="sgdemo.", dir="/tmp")
    ok_all = True
    say(ROW % ("message", "sent", "gateway decided", "arrived"))
    try:
        for i, s in enumerate(SENDS):
            msgid = "<demo-%d.%s@example.com>" % (i, token)
            marker = "demo marker %d %s" % (i, token)
            argv = ["swaks", "--server", "127.0.0.1:%d" % state["port"],
                    "--from", s.sender, "--to", s.rcpt,
                    "--header", "Message-Id: %s" % msgid]
            if s.login:
                argv += ["--auth", "PLAIN", "--auth-user", s.login,
                         "--auth-password", LOGINS[s.login]]
            if s.data:
                argv += ["--data", "@" + state["inbound"]]
            else:
                argv += ["--header", "Subject: %s" % s.subject,
                         "--body", "Hello,\n%s\nAlice" % marker]
            cp = run(argv, check=False)
            out = cp.stdout.decode("utf-8", "replace")
            m = re.search(r"queued as (\w+)", out)
            qid = m.group(1) if m else None
            sent = "%s -> %s" % (s.sender, s.rcpt)
            if s.check is None:
                reply = re.search(r"<\*\* (5\d\d .*)", out)
                ok = reply is not None
                arrived = "refused: " + reply.group(1) if ok else \
                    "UNEXPECTED: not refused"
                rule = re.search(r'rule "([^"]+)"', arrived)
                decided = "reject" + (" (rule %s)" % rule.group(1)
                                      if rule else "")
            else:
                name = None
                deadline = time.monotonic() + 60
                while qid and name is None and time.monotonic() < deadline:
                    name, raw = find_delivered(state["mail"], msgid)
                    if name is None:
                        time.sleep(0.1)
                if name is None:
                    ok, arrived = False, "UNEXPECTED: nothing arrived"
                else:
                    ok, arrived = s.check(raw, marker, tmp)
                    arrived = "%s: %s" % (name, arrived)
                    if not ok:
                        arrived = "UNEXPECTED: " + arrived
            if s.check is not None:
                decided = decision(state["milter_log"], qid) or "?"
            say(ROW % (s.name, sent, decided, arrived))
            ok_all = ok_all and ok
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ok_all



# --------------------------------------------------------------------------

def running_demo(directory):
    """The state of a demo running from directory (checked by check_dir), or
    None. Only the pid and the port are taken from its demo.json, and only
    when the effective user wrote it; every path is directory's own."""
    try:
        fd = os.open(os.path.join(directory, STATE),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd) as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                return None
            saved = json.load(f)
        pid, port = saved["pid"], saved["port"]
        if type(pid) is not int or type(port) is not int or pid <= 0 or \
                not 0 < port < 65536:
            return None
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not port_in_use(port):
        return None
    return {"pid": pid, "port": port,
            "mail": os.path.join(directory, "mail"),
            "inbound": os.path.join(directory, "inbound-to-alice.eml"),
            "milter_log": os.path.join(directory, "milter.log")}


def wait_for_signal(demo):
    """Until SIGINT or SIGTERM, or until the milter stops by itself."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if demo.milter.poll() is not None:
            say("sealgate milter stopped (exit %d)" % demo.milter.returncode)
            return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("run", "send"))
    ap.add_argument("--bin", required=True, help="the sealgate binary")
    ap.add_argument("--policy", required=True, help="the policy file")
    ap.add_argument("--dir", required=True,
                    help="the demo's own directory (Postfix, mail, logs)")
    ap.add_argument("--port", type=int, default=2525, help="SMTP port")
    ap.add_argument("--milter-port", type=int, default=8891)
    args = ap.parse_args()

    demo = Demo(args)
    rc = 1
    try:
        try:
            rc = command(demo, args)
        except DemoError as e:
            say("sealgate demo: %s" % e)
        except KeyboardInterrupt:
            say("sealgate demo: interrupted")
    finally:
        # Ctrl-C also reached the milter (same process group); stop()
        # waits for everything the demo started.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        failures = demo.stop()
        for text in failures:
            say("sealgate demo: %s" % text)
    if failures:
        say("sealgate demo: stopped, but not cleanly (see above)")
        return 1
    if args.command == "run":
        say("sealgate demo: stopped; nothing left running")
    return rc


def command(demo, args):
    """Runs demo.py's command; its exit code."""
    if args.command == "send":
        check_dir(demo.dir)
        state = running_demo(demo.dir)
        if state is None:
            say("== starting the demo for this run (make run keeps one "
                "running)")
            demo.start(echo_log=False)
            state = running_demo(demo.dir)
        say("sealgate demo: SMTP 127.0.0.1:%d, delivered mail in %s"
            % (state["port"], state["mail"]))
        return 0 if send_all(state) else 1
    demo.start(echo_log=True)
    demo.print_intro()
    return wait_for_signal(demo)


if __name__ == "__main__":
    sys.exit(main())
