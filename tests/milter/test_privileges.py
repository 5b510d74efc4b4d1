"""Privileges of `sealgate milter`: the user it runs as, its socket, core
dumps, and the refusals at start-up.

Started as root with gateway.user: nobody, gateway.socket_group: postfix and
a unix socket (the keystore and spool are nobody's, made with `sealgate keys
import` run as nobody), behind a private Postfix (tests/lib/postfix.py):

  a) every thread of the milter has nobody's ids and groups (real,
     effective, saved, file system), no capabilities, no_new_privs;
  b) it is not dumpable (/proc/PID/status and /proc/PID/mem belong to root
     while the process is nobody's: the kernel's mark of a process that is
     not dumpable) and RLIMIT_CORE is 0, soft and hard, although it was
     started with no limit;
  c) the socket on disk: a socket, 0660, owner nobody, group postfix;
  d) mail flows through Postfix: a 1.5 MB message (spooled to a file) to
     carol arrives encrypted and gpg in carol's home decrypts it; a PGP/MIME
     message to alice arrives decrypted (gpg and gpg-agent run as nobody);
  e) SIGUSR1 reloads the policy as nobody; a reload that changes the socket
     or whom the milter runs as says that this waits for a restart;

Started as nobody (as systemd's User= does), without gateway.user:

  f) not dumpable either (here only sealgate's own prctl can have made it
     so: no change of ids happened), RLIMIT_CORE 0, the socket 0660 with
     nobody's group;

Refusals (exit 1, the reason on stderr, no socket file left):

  g) started as root without gateway.user or -u;
  h) -u or gateway.user naming an unknown user;
  i) a keystore that belongs to root, a spool nobody cannot write, a
     policy nobody cannot read (SIGUSR1 would fail), a keystore whose
     first snapshot fails after the socket opened;
  j) a socket that inherits an ACL from its directory; started as nobody:
     -u root, and a socket_group nobody is not in;

and as root, `sealgate process` and `keys export --secret` refuse nobody's
keystore (k): a gpg-agent of root's in it would break the gateway's own
decryptions. As nobody, process decrypts; root may still list and explain.
"""

import grp
import os
import pwd
import resource
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time
import unittest

import inboundtest
import miltertest
import postfix
import sgtest
from inboundtest import ALICE, CAROL, alternative_entity, gpg_encrypt, new_marker, \
    pgp_mime_message
from miltertest import strip_added_received, with_diagnostics

BINARY = miltertest.require_tools()

NOBODY = pwd.getpwnam("nobody")
POSTFIX_GID = grp.getgrnam(postfix.POSTFIX_USER).gr_gid
NOBODY_GROUPS = sorted(set(os.getgrouplist("nobody", NOBODY.pw_gid)))

STATE = {}

POLICY = """\
version: 1
gateway:
  socket: "unix:{socket}"
{extra}  keystore: "store"
  spool_dir: "spool"
internal_domains: [example.com]
outbound:
  default: {{ action: encrypt-if-key, methods: [openpgp] }}
inbound: {{ decrypt: true, verify: true, require_integrity: false }}
"""


def write_policy(path, socket_path, extra="  user: nobody\n  socket_group: postfix\n"):
    with open(path, "w") as f:
        f.write(POLICY.format(socket=socket_path, extra=extra))
    os.chmod(path, 0o644)


def as_nobody():
    """subprocess arguments that start a program as nobody (ids and groups)."""
    return {"user": NOBODY.pw_uid, "group": NOBODY.pw_gid, "extra_groups": [],
            "env": dict(os.environ, HOME="/nonexistent")}


def no_core_limit():
    """Run in the child before exec: core files of any size, so that a 0
    the test sees is sealgate's."""
    resource.setrlimit(resource.RLIMIT_CORE,
                       (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def status_fields(path):
    fields = {}
    with open(path) as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.split()
    return fields


def core_limit(pid):
    """(soft, hard) of "Max core file size" in /proc/PID/limits."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max core file size"):
                cols = line.split()
                return cols[4], cols[5]
    raise AssertionError("no core file size in /proc/%d/limits" % pid)


def connectable(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            return True
    except OSError:
        return False


def negotiates(path):
    """Whether libmilter answers an option negotiation on path: its
    listener runs (a connection alone may wait in the backlog while the
    milter is still starting)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(struct.pack(">IcIII", 13, b"O", 6, 0x1FF, 0x1FFFFF))
            head = s.recv(5)
            s.sendall(struct.pack(">Ic", 1, b"Q"))
            return len(head) == 5 and head[4:5] == b"O"
    except OSError:
        return False


class UnixMilter:
    """`sealgate milter` on a unix socket, its stdout and stderr in a log;
    the interface of postfix.MilterProcess that MilterTestCase uses."""

    def __init__(self, argv, sock, log_path, **popen):
        self.argv = argv
        self.sock = sock
        self.log_path = log_path
        self.popen = popen
        self.proc = None

    def start(self, timeout=20):
        """Start it and wait until it has said that it listens and libmilter
        answers on the socket (a SIGTERM before libmilter's listener runs
        makes libmilter open the socket again, which the user cannot)."""
        mark = self.log_size()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, **self.popen)
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            if "listening on" in self.log_since(mark) and negotiates(self.sock):
                return
            time.sleep(0.05)
        raise AssertionError("the milter does not listen on %s (exit %r):\n%s"
                             % (self.sock, self.proc.poll(), self.log_text()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_log(self, text, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log_text():
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return None if self.proc is None else self.proc.returncode

    def log_text(self):
        return postfix.read_log(self.log_path)

    def log_size(self):
        return postfix.file_size(self.log_path)

    def log_since(self, offset):
        return postfix.read_log(self.log_path, offset)


def nobodys_gateway(tmp, ids, name, extra="  user: nobody\n  socket_group: postfix\n"):
    """A gateway in tmp/name whose keystore and spool are nobody's: the
    keys (alice's secret key, carol's public key) imported by `sealgate
    keys import` run as nobody. Returns (gateway, socket path)."""
    d = os.path.join(tmp, name)
    os.makedirs(os.path.join(d, "run"))
    os.chmod(d, 0o755)
    os.chmod(os.path.join(d, "run"), 0o755)
    sock = os.path.join(d, "run", "milter.sock")
    gw = sgtest.Gateway(d)
    write_policy(gw.policy, sock, extra)
    for path in (gw.keystore, gw.spool):
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    carol_pub = sgtest.export_public_key(tmp, ids.sender, CAROL)
    for path in (carol_pub, ids.sec_files[ALICE]):
        os.chmod(path, 0o644)
    cp = subprocess.run([BINARY, "keys", "-c", gw.policy, "import", carol_pub,
                         ids.sec_files[ALICE]], capture_output=True, timeout=120,
                        stdin=subprocess.DEVNULL, **as_nobody())
    if cp.returncode != 0:
        raise RuntimeError("keys import as nobody failed: %r" % (cp,))
    return gw, sock


def setUpModule():
    tmp = sgtest.tmpdir("sgpv")
    os.chmod(tmp, 0o755)          # nobody and postfix reach into it
    ids = inboundtest.Identities(tmp, smime=False)
    gw, sock = nobodys_gateway(tmp, ids, "gw")
    milter = UnixMilter([BINARY, "milter", "-c", gw.policy, "-f"], sock,
                        os.path.join(tmp, "sealgate.log"), preexec_fn=no_core_limit)
    STATE.update(tmp=tmp, ids=ids, gw=gw, carol=ids.sender, milter=milter, sock=sock)
    milter.start()
    STATE["pf"] = postfix.PrivatePostfix("unix:" + sock)


def tearDownModule():
    miltertest.tear_down(STATE)
    if "ids" in STATE:
        STATE["ids"].kill_agents()


class StartedAsRoot(miltertest.MilterTestCase):

    state = STATE

    def pid(self):
        return self.milter.proc.pid

    @with_diagnostics
    def test_a_ids_groups_and_capabilities_dropped(self):
        self.assertTrue(self.milter.wait_log("listening on unix:%s, policy %s, user nobody, "
                                             "group nogroup" % (self.state["sock"],
                                                                self.gw.policy)),
                        self.milter.log_text())
        want_ids = [str(NOBODY.pw_uid)] * 4
        want_gids = [str(NOBODY.pw_gid)] * 4
        tasks = os.listdir("/proc/%d/task" % self.pid())
        self.assertGreater(len(tasks), 1, "libmilter runs several threads")
        for task in tasks:
            with self.subTest(task=task):
                st = status_fields("/proc/%d/task/%s/status" % (self.pid(), task))
                self.assertEqual(st["Uid"], want_ids)
                self.assertEqual(st["Gid"], want_gids)
                self.assertEqual(sorted(int(g) for g in st["Groups"]), NOBODY_GROUPS)
                for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                    self.assertEqual(int(st[cap][0], 16), 0, cap)
                self.assertEqual(st["NoNewPrivs"], ["1"])

    @with_diagnostics
    def test_b_not_dumpable_and_no_core_files(self):
        st = status_fields("/proc/%d/status" % self.pid())
        self.assertEqual(st["Uid"][1], str(NOBODY.pw_uid))
        # The kernel gives the files of a process that is not dumpable to
        # root; a dumpable one's belong to its user.
        for name in ("status", "mem", "environ"):
            self.assertEqual(os.stat("/proc/%d/%s" % (self.pid(), name)).st_uid, 0, name)
        self.assertEqual(core_limit(self.pid()), ("0", "0"))

    @with_diagnostics
    def test_c_socket_mode_owner_and_group(self):
        st = os.lstat(self.state["sock"])
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual((st.st_uid, st.st_gid), (NOBODY.pw_uid, POSTFIX_GID))

    @with_diagnostics
    def test_d_large_message_encrypted_through_postfix(self):
        secret = miltertest.marker()
        body_line = "x" * 76 + "\n"
        msg = miltertest.make_msg(CAROL, secret) + (body_line * 20000).encode()
        self.assertGreater(len(msg), 1024 * 1024)   # beyond the memory spool
        code, text, refused = self.pf.send_smtplib(ALICE, [CAROL], msg)
        self.assertEqual((code, refused), (250, {}), text)
        msgs = self.pf.wait_for_sink(1, timeout=60, settle=0.5)
        self.assertEqual(len(msgs), 1, msgs)
        self.assert_encrypted_copy(msgs[0], msg, secret)

    @with_diagnostics
    def test_d_decrypted_for_alice_through_postfix(self):
        marker = new_marker()
        msg = pgp_mime_message(gpg_encrypt(self.state["ids"], alternative_entity(marker),
                                           [ALICE]))
        code, text, refused = self.pf.send_smtplib(CAROL, [ALICE], msg)
        self.assertEqual((code, refused), (250, {}), text)
        msgs = self.pf.wait_for_sink(1, timeout=60, settle=0.5)
        self.assertEqual(len(msgs), 1, msgs)
        got = strip_added_received(bytes(msgs[0]))
        self.assertEqual(sgtest.field_values(got, "X-Sealgate-Decrypted"),
                         ["yes; method=openpgp; integrity=mdc"])
        self.assertIn(marker.encode(), got)

    @with_diagnostics
    def test_e_reload_as_nobody(self):
        self.milter.proc.send_signal(signal.SIGUSR1)
        self.assertIsNotNone(self.wait_sealgate_log(r"policy .* reloaded"),
                             self.milter.log_since(self.log_mark))
        log = self.milter.log_since(self.log_mark)
        self.assertNotIn("reload failed", log)
        self.assertNotIn("changed", log)
        self.assertTrue(self.milter.running())

    @with_diagnostics
    def test_e_reload_names_keys_that_wait_for_a_restart(self):
        with open(self.gw.policy) as f:
            good = f.read()
        try:
            write_policy(self.gw.policy, self.state["sock"] + ".new",
                         "  user: root\n  socket_mode: 0600\n")
            self.milter.proc.send_signal(signal.SIGUSR1)
            self.assertIsNotNone(self.wait_sealgate_log(r"policy .* reloaded"),
                                 self.milter.log_since(self.log_mark))
            log = self.milter.log_since(self.log_mark)
            for key in ("socket", "socket_mode", "socket_group", "user"):
                self.assertIn("reload: gateway.%s changed; it takes effect only when "
                              "the milter is restarted" % key, log)
            self.assertNotIn("gateway.group changed", log)
            # Still nobody, on the same socket.
            st = status_fields("/proc/%d/status" % self.pid())
            self.assertEqual(st["Uid"], [str(NOBODY.pw_uid)] * 4)
            self.assertTrue(connectable(self.state["sock"]))
        finally:
            with open(self.gw.policy, "w") as f:
                f.write(good)
            mark = self.milter.log_size()
            self.milter.proc.send_signal(signal.SIGUSR1)
            end = time.monotonic() + 20
            while "reloaded" not in self.milter.log_since(mark) and time.monotonic() < end:
                time.sleep(0.05)


class StartedAsNobody(unittest.TestCase):
    """As systemd starts it with User=: nobody from the start, no change of
    ids by sealgate."""

    def setUp(self):
        self.tmp = STATE["tmp"]
        self.gw, self.sock = nobodys_gateway(self.tmp, STATE["ids"], "asuser-%s" % os.urandom(3).hex(),
                                             extra="")
        # The milter (nobody) removes its socket at exit: its directory too.
        os.chown(os.path.dirname(self.sock), NOBODY.pw_uid, NOBODY.pw_gid)
        self.milter = UnixMilter([BINARY, "milter", "-c", self.gw.policy, "-f"], self.sock,
                                 os.path.join(self.gw.dir, "milter.log"),
                                 preexec_fn=no_core_limit, **as_nobody())

    def tearDown(self):
        self.milter.stop()

    def test_f_not_dumpable_no_core_socket(self):
        self.milter.start()
        pid = self.milter.proc.pid
        st = status_fields("/proc/%d/status" % pid)
        self.assertEqual(st["Uid"], [str(NOBODY.pw_uid)] * 4)
        for name in ("status", "mem"):
            self.assertEqual(os.stat("/proc/%d/%s" % (pid, name)).st_uid, 0,
                             "/proc/PID/%s: the process is dumpable" % name)
        self.assertEqual(core_limit(pid), ("0", "0"))
        self.assertEqual(st["NoNewPrivs"], ["1"])
        sst = os.lstat(self.sock)
        self.assertEqual(stat.S_IMODE(sst.st_mode), 0o660)
        self.assertEqual((sst.st_uid, sst.st_gid), (NOBODY.pw_uid, NOBODY.pw_gid))
        self.assertTrue(self.milter.wait_log("listening on unix:%s, policy %s, "
                                             "user nobody, group nogroup"
                                             % (self.sock, self.gw.policy)),
                        self.milter.log_text())
        self.assertEqual(self.milter.stop(), 0, self.milter.log_text())


class RootInTheGatewaysKeystore(unittest.TestCase):
    """Commands that use secret keys refuse to run as root in the keystore
    of the gateway's user: gpg would start a gpg-agent of root's there,
    and the gateway's own decryptions would fail while it runs."""

    def setUp(self):
        self.gw, _sock = nobodys_gateway(STATE["tmp"], STATE["ids"],
                                         "rootks-%s" % os.urandom(3).hex())
        self.work = os.path.join(self.gw.dir, "work")
        os.mkdir(self.work)
        os.chown(self.work, NOBODY.pw_uid, NOBODY.pw_gid)
        self.marker = new_marker()
        self.msg = os.path.join(self.work, "in.eml")
        with open(self.msg, "wb") as f:
            f.write(pgp_mime_message(gpg_encrypt(STATE["ids"],
                                                 alternative_entity(self.marker), [ALICE])))
        os.chmod(self.msg, 0o644)
        self.pgp = os.path.join(self.gw.keystore, "openpgp")

    def tearDown(self):
        subprocess.run(["gpgconf", "--homedir", self.pgp, "--kill", "all"],
                       capture_output=True, timeout=30, **as_nobody())

    def sealgate(self, *args, **popen):
        cp = subprocess.run([BINARY] + list(args), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=120, **popen)
        return cp.returncode, cp.stdout.decode("utf-8", "replace"), \
            cp.stderr.decode("utf-8", "replace")

    def process(self, out, **popen):
        return self.sealgate("process", "-c", self.gw.policy, "--from", CAROL,
                             "--to", ALICE, "--client-ip", "192.0.2.1", "-i", self.msg,
                             "-o", out, **popen)

    def root_files(self):
        return [os.path.join(d, n) for d, dirs, files in os.walk(self.gw.keystore)
                for n in dirs + files if os.lstat(os.path.join(d, n)).st_uid == 0]

    def test_k_process_as_root_refused(self):
        out = os.path.join(self.work, "out-root.eml")
        rc, _out, err = self.process(out)
        self.assertEqual(rc, 1, err)
        self.assertIn("sealgate: keystore %s belongs to user nobody: run \"sealgate "
                      "process\" as that user (sudo -u nobody sealgate process ...); as "
                      "root it would leave a gpg-agent of root's in the keystore"
                      % self.gw.keystore, err)
        self.assertFalse(os.path.exists(out))
        self.assertEqual(self.root_files(), [])
        # As the keystore's owner it decrypts.
        out = os.path.join(self.work, "out-nobody.eml")
        rc, _out, err = self.process(out, **as_nobody())
        self.assertEqual(rc, 0, err)
        with open(out, "rb") as f:
            got = f.read()
        self.assertEqual(sgtest.field_values(got, "X-Sealgate-Decrypted"),
                         ["yes; method=openpgp; integrity=mdc"])
        self.assertIn(self.marker.encode(), got)
        self.assertEqual(self.root_files(), [])

    def test_k_process_not_dumpable(self):
        # `process` holds plaintext too: while it waits for its message it
        # is not dumpable and may not write a core file, as the milter.
        p = subprocess.Popen([BINARY, "process", "-c", self.gw.policy, "--from", CAROL,
                              "--to", ALICE, "--client-ip", "192.0.2.1"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, preexec_fn=no_core_limit,
                             **as_nobody())
        try:
            # It reads its message after the policy and the keystore:
            # wait until it blocks on the read of standard input.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and p.poll() is None:
                try:
                    with open("/proc/%d/wchan" % p.pid) as f:
                        wchan = f.read()
                    with open("/proc/%d/syscall" % p.pid) as f:
                        syscall = f.read().split()
                except OSError:
                    wchan, syscall = "", []
                if syscall[:2] == ["0", "0x0"] or wchan.endswith("pipe_read"):
                    break
                time.sleep(0.05)
            self.assertIsNone(p.poll(), "process ended before it read its message")
            for name in ("status", "mem"):
                self.assertEqual(os.stat("/proc/%d/%s" % (p.pid, name)).st_uid, 0,
                                 "/proc/PID/%s: process is dumpable" % name)
            self.assertEqual(core_limit(p.pid), ("0", "0"))
        finally:
            out, err = p.communicate(b"", timeout=120)
        self.assertIn(p.returncode, (0, 2, 3), err)

    def test_k_secret_export_as_root_refused(self):
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "export", ALICE,
                                     "--secret")
        self.assertEqual(rc, 1, err)
        self.assertIn('run "sealgate keys export --secret" as that user', err)
        self.assertNotIn("PRIVATE KEY", out)
        # What uses no secret key stays open to root.
        rc, out, err = self.sealgate("keys", "-c", self.gw.policy, "export", ALICE)
        self.assertEqual(rc, 0, err)
        self.assertIn("BEGIN PGP PUBLIC KEY BLOCK", out)
        rc, out, err = self.sealgate("policy", "explain", "-c", self.gw.policy,
                                     "--from", ALICE, "--to", CAROL)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.root_files(), [])


class Refusals(unittest.TestCase):
    """Each start must end with exit 1, the reason on stderr, and no socket
    file (and nothing listening)."""

    def setUp(self):
        self.tmp = STATE["tmp"]
        name = "refuse-%s" % os.urandom(3).hex()
        self.gw, self.sock = nobodys_gateway(self.tmp, STATE["ids"], name)

    def start(self, *extra, **popen):
        cp = subprocess.run([BINARY, "milter", "-c", self.gw.policy, "-f"] + list(extra),
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                            **popen)
        err = cp.stderr.decode("utf-8", "replace")
        self.assertEqual(cp.returncode, 1, err)
        self.assertNotIn("listening on", err)
        self.assertFalse(os.path.lexists(self.sock), "socket file left: %s" % err)
        return err

    def set_policy(self, extra):
        write_policy(self.gw.policy, self.sock, extra)

    def test_g_root_without_user(self):
        self.set_policy("  socket_group: postfix\n")
        err = self.start()
        self.assertIn("sealgate: started as root without gateway.user: name the user "
                      "the milter runs as (the keystore's owner, e.g. sealgate) in "
                      "gateway.user, or start it with -u root", err)

    def test_h_unknown_user(self):
        err = self.start("-u", "no-such-sg-user")
        self.assertIn('sealgate: -u: unknown user "no-such-sg-user"', err)
        self.set_policy("  user: no-such-sg-user\n")
        err = self.start()
        self.assertRegex(err, r'policy.yaml:4:9: "user": unknown user "no-such-sg-user"')

    def test_i_keystore_of_root(self):
        subprocess.run(["chown", "-R", "root:root", self.gw.keystore], check=True)
        err = self.start()
        self.assertIn("sealgate: keystore %s belongs to user root, but the milter runs "
                      "as user nobody: give it to that user (chown -R nobody: %s)"
                      % (self.gw.keystore, self.gw.keystore), err)
        # -u root runs as root: the same keystore is then fine.
        self.set_policy("")
        milter = UnixMilter([BINARY, "milter", "-c", self.gw.policy, "-f", "-u", "root"],
                            self.sock, os.path.join(self.gw.dir, "root.log"))
        milter.start()
        try:
            self.assertTrue(milter.wait_log("handling mail as root"), milter.log_text())
        finally:
            self.assertEqual(milter.stop(), 0)

    def test_i_spool_not_writable(self):
        os.chown(self.gw.spool, 0, 0)
        err = self.start()
        self.assertIn("sealgate: spool directory %s: user nobody cannot create files in "
                      "it: Permission denied" % self.gw.spool, err)

    def test_i_spool_cannot_be_created(self):
        shutil.rmtree(self.gw.spool)
        err = self.start()
        self.assertIn("sealgate: spool directory %s: Permission denied" % self.gw.spool, err)
        self.assertFalse(os.path.exists(self.gw.spool))

    def test_i_spool_created_for_the_user(self):
        # A spool that is missing is created by the user, where it may.
        os.rmdir(self.gw.spool)
        os.chown(self.gw.dir, NOBODY.pw_uid, NOBODY.pw_gid)
        milter = UnixMilter([BINARY, "milter", "-c", self.gw.policy, "-f"], self.sock,
                            os.path.join(self.gw.dir, "m.log"))
        milter.start()
        try:
            st = os.stat(self.gw.spool)
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (NOBODY.pw_uid, 0o700))
        finally:
            self.assertEqual(milter.stop(), 0, milter.log_text())

    def test_i_policy_unreadable_for_the_user(self):
        os.chmod(self.gw.policy, 0o600)
        err = self.start()
        self.assertIn("sealgate: user nobody cannot read the policy (SIGUSR1 reads it "
                      "again as that user):\n%s: cannot open: Permission denied"
                      % self.gw.policy, err)

    def test_j_socket_with_an_inherited_acl(self):
        # A default ACL of the directory that lets nobody in, whatever the
        # mode of the socket says (system.posix_acl_default: version 2, then
        # tag, permissions, id per entry).
        entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 6, NOBODY.pw_uid), (0x04, 6, 0xFFFFFFFF),
                   (0x10, 6, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
        acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
        os.setxattr(os.path.dirname(self.sock), "system.posix_acl_default", acl)
        err = self.start()
        self.assertIn("sealgate: socket %s has an ACL, inherited from a default ACL of its "
                      "directory, that can let other users connect" % self.sock, err)

    def test_i_keystore_snapshot_fails_after_the_socket_opened(self):
        # The checks before the socket cannot see this (they run no gpg and
        # read no certificate): the first snapshot, built as nobody after
        # the switch, fails, and the socket goes again. Its directory is
        # nobody's, as systemd's RuntimeDirectory= would make it.
        bad = os.path.join(self.gw.keystore, "smime", "certs", "BAD.pem")
        with open(bad, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n"
                    "-----END CERTIFICATE-----\n")
        os.chown(bad, NOBODY.pw_uid, NOBODY.pw_gid)
        os.chown(os.path.dirname(self.sock), NOBODY.pw_uid, NOBODY.pw_gid)
        err = self.start()
        self.assertIn("0 of 1 certificate files could be read", err)

    def test_j_socket_spec_forms(self):
        # Every form libmilter reads as a unix socket gets the same owner,
        # group and mode.
        for spec in ("LOCAL:" + self.sock, "Unix:" + self.sock, ":" + self.sock, self.sock):
            with self.subTest(spec):
                milter = UnixMilter([BINARY, "milter", "-c", self.gw.policy, "-f", "-s", spec],
                                    self.sock, os.path.join(self.gw.dir, "forms.log"))
                milter.start()
                try:
                    st = os.lstat(self.sock)
                    self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid),
                                     (0o660, NOBODY.pw_uid, POSTFIX_GID))
                finally:
                    self.assertEqual(milter.stop(), 0, milter.log_text())

    def test_j_not_root_cannot_switch(self):
        self.set_policy("")
        err = self.start("-u", "root", **as_nobody())
        self.assertIn("sealgate: cannot run as user root, group root: started as user "
                      "nobody, not as root", err)

    def test_j_not_root_foreign_socket_group(self):
        self.set_policy("  socket_group: postfix\n")
        os.chown(os.path.dirname(self.sock), NOBODY.pw_uid, NOBODY.pw_gid)
        err = self.start(**as_nobody())
        self.assertIn("sealgate: cannot give socket %s to user nobody, group postfix: "
                      "Operation not permitted (a milter not started as root can only "
                      "give it one of its own groups)" % self.sock, err)


if __name__ == "__main__":
    unittest.main()
