"""Faults a daemon meets in years of unattended running, injected while
mail passes through a real Postfix.

A private Postfix (tests/lib/postfix.py) calls `sealgate milter` and relays
to smtp-sink. Mail is submitted to its relay stage (relay_port): Postfix
accepts it without the milter and hands it to the smtpd stage that calls
sealgate, so a temporary failure there leaves the message in Postfix's
queue, which retries it -- the way an organisation's mail server feeds the
gateway. The gateway (internal domain example.com, outbound default
encrypt-if-key with OpenPGP, a "[secure]" subject tag that makes
encryption mandatory, mail to lists.example signed) holds carol's public
key and alice's OpenPGP key pair and S/MIME identity; mail to carol is
decrypted with gpg in carol's own GnuPG home, mail from carol to alice is
encrypted there (or with `openssl cms`).

The milter runs as root (-u root) without CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH (setpriv), so file modes bind it as they bind a daemon
under its own user; its TMPDIR is a directory of the test.

  1) SIGKILL in the middle of a large message (its body sits in a file in
     spool_dir, no verdict yet): Postfix defers it, nothing reaches the
     sink, nothing is left in the spool; after a restart and a queue flush
     it arrives exactly once, encrypted, and carol's gpg decrypts it to
     the original. The same in the middle of decrypting a large inbound
     message: the throwaway GnuPG home holding alice's secret keys that
     the killed milter left in TMPDIR is gone (and its agent stopped) once
     the milter has started again; the message arrives decrypted, once.
  2) the gpg-agent of the keystore killed (SIGKILL) between messages: the
     next inbound message is decrypted, the next message to sign is signed
     (gpg verifies alice's signature) -- gpg starts a new agent.
  3) keystore made unreadable (chmod 000) while running: mail that needs it
     is deferred (4xx), nothing reaches the sink, the log says why; once
     the mode is restored, each message arrives exactly once, encrypted
     for carol or decrypted for alice. The whole keystore (no snapshot can
     be built: outbound, OpenPGP and S/MIME inbound); its OpenPGP home
     (the snapshot in memory still knows the keys, gpg cannot use them:
     outbound and inbound); its S/MIME private keys (inbound); and the
     milter's TMPDIR, where decryption makes a throwaway GnuPG home.
     Inbound mail is never delivered undecrypted because of such a fault.
  4) spool on a full file system (a small tmpfs over spool_dir, filled
     with a file): a message larger than the in-memory bound is deferred
     (451 4.3.0), the log says why; once the filler is removed and the
     queue flushed, it arrives exactly once, encrypted. Also when the
     message itself fits but its encrypted form does not.
  5) policy file deleted while running: SIGUSR1 logs that the reload of
     that file failed and that the previous policy stays in force; mail
     goes on under it (the subject tag still refuses mail to a recipient
     without a key, mail to carol is encrypted); with the file back,
     SIGUSR1 reloads it.

Where mounting a tmpfs is not permitted, 4) cannot run: the other tests
run, and the file then reports itself as skipped (exit code 77).
"""

import atexit
import base64
import errno
import os
import re
import signal
import stat
import subprocess
import time
import unittest

import inboundtest
import miltertest
import postfix
import sgtest
import signtest
from inboundtest import ALICE, CAROL, InboundCase, alternative_entity, cms_encrypt, \
    gpg_encrypt, new_marker, pgp_mime_message, smime_message
from miltertest import marker, strip_added_received, with_diagnostics

STATE = {}

BINARY = miltertest.require_tools()
SETPRIV = sgtest.require_program("setpriv")

NOKEY = "zoe@nokey.example"
LIST = "team@lists.example"

POLICY = """\
version: 1
gateway: { keystore: "store", spool_dir: "spool", trusted_networks: [127.0.0.0/8],
           signing_networks: [127.0.0.0/8] }
internal_domains: [example.com]
outbound:
  default: { action: encrypt-if-key, methods: [openpgp] }
  rules:
    - name: signed-list
      when: { recipient_domain: [lists.example] }
      action: sign
      methods: [openpgp]
    - name: subject-tag
      when: { subject_tag: "[secure]" }
      action: encrypt
      on_missing_key: reject
inbound: { decrypt: true, verify: true }
"""

# Bodies above this go to a file in spool_dir (the spool's memory bound).
SPOOL_MEMORY = 1024 * 1024

# Capabilities that let root ignore file modes.
DAC_CAPS = "-dac_override,-dac_read_search"

SKIPPED = []        # reasons of tests that could not run here


def setUpModule():
    tmp = sgtest.tmpdir("sgft")
    os.chmod(tmp, 0o755)          # the postfix user reaches into it
    ids = inboundtest.Identities(tmp)
    gw = ids.gateway(os.path.join(tmp, "gw"), POLICY, openpgp=(ALICE,), smime=(ALICE,))
    sgtest.import_public_keys(gw, tmp, [(ids.sender, CAROL)])
    # The milter's TMPDIR, where it makes throwaway GnuPG homes.
    mtmp = os.path.join(tmp, "mtmp")
    os.mkdir(mtmp, 0o700)
    STATE.update(tmp=tmp, gw=gw, ids=ids, carol=ids.sender, mtmp=mtmp)
    milter = postfix.MilterProcess(
        lambda spec: [SETPRIV, "--inh-caps=" + DAC_CAPS, "--bounding-set=" + DAC_CAPS,
                      "--", BINARY, "milter", "-c", gw.policy, "-s", spec, "-f"]
        + sgtest.milter_user_args(),
        os.path.join(tmp, "sealgate.log"), env=dict(os.environ, TMPDIR=mtmp),
        unix=os.path.join(tmp, "milter.sock"))
    milter.start()
    STATE["milter"] = milter
    STATE["pf"] = postfix.PrivatePostfix(
        milter.postfix_spec, extra_main={"message_size_limit": "60000000"})


def tearDownModule():
    miltertest.tear_down(STATE)
    if "ids" in STATE:
        STATE["ids"].kill_agents()


def large_body(secret, size):
    """(Content-Type value, body) of a multipart/mixed entity of about size
    bytes: a text part with the marker and a base64 attachment of random
    bytes (which gpg cannot compress). LF line ends."""
    boundary = "mix-" + os.urandom(6).hex()
    data = base64.encodebytes(os.urandom(size * 3 // 4)).decode()
    body = ("--%s\n"
            "Content-Type: text/plain; charset=us-ascii\n\n"
            "The figures are attached.\n%s\n\n"
            "--%s\n"
            "Content-Type: application/octet-stream; name=\"figures.bin\"\n"
            "Content-Transfer-Encoding: base64\n"
            "Content-Disposition: attachment; filename=\"figures.bin\"\n\n"
            "%s\n"
            "--%s--\n" % (boundary, secret, boundary, data, boundary))
    return 'multipart/mixed; boundary="%s"' % boundary, body


def large_msg(to, secret, size, subject="Quarterly figures, all of them"):
    """A message from alice with large_body()."""
    headers = sgtest.std_headers(sender="Alice Example <%s>" % ALICE,
                                 to="<%s>" % to, subject=subject)
    ctype, body = large_body(secret, size)
    headers.append(("Content-Type", ctype))
    return sgtest.make_message(headers, body, eol=b"\n")


def large_entity(secret, size):
    """large_body() as an entity to encrypt (CRLF)."""
    ctype, body = large_body(secret, size)
    return sgtest.canon(("Content-Type: %s\n\n%s" % (ctype, body)).encode())


class FaultCase(miltertest.MilterTestCase, InboundCase):
    """Submission to the relay stage and checks of the queue and the sink."""

    state = STATE

    def setUp(self):
        super().setUp()
        self.ids = self.state["ids"]

    def relay(self, sender, rcpts, msg):
        """Submit msg to the relay stage (no milter there): accepted and
        queued. Returns the relay stage's queue id."""
        code, text, refused = self.pf.send_smtplib(sender, rcpts, msg,
                                                   port=self.pf.relay_port)
        self.assertEqual((code, refused), (250, {}), text)
        m = re.search(r"queued as (\w+)", text)
        self.assertIsNotNone(m, text)
        return m.group(1)

    def wait_deferred(self, qid, rx, attempts=2, timeout=30):
        """Wait until the maillog shows the relay stage's qid deferred
        `attempts` times, each with a reply matching rx, and return its
        queue entry. Each further attempt is asked for with a flush (a
        deferred message whose retry meets a delivery still in progress
        waits for the next new message otherwise)."""
        pattern = re.compile(r"%s: to=<[^>]*>.*status=deferred \(([^\n]*)\)"
                             % re.escape(qid))
        end = time.monotonic() + timeout
        flushed = 0
        while True:
            found = pattern.findall(self.pf.maillog_since())
            if len(found) >= attempts:
                break
            self.assertEqual(self.pf.sink.files(), [],
                             "delivered instead of deferred")
            if time.monotonic() >= end:
                self.fail("%s not deferred %d time(s) within %ss; deferrals: %r"
                          % (qid, attempts, timeout, found))
            if found and flushed < len(found):
                self.pf.flush()
                flushed = len(found)
            time.sleep(0.2)
        for reason in found:
            self.assertRegex(reason, rx)
        entries = [e for e in self.pf.queue() if e.get("queue_id") == qid]
        self.assertEqual(len(entries), 1, self.pf.postqueue_p())
        return entries[0]

    def assert_nothing_delivered(self):
        self.assertEqual(self.pf.sink.files(), [], "something reached the sink")

    def flush_and_collect(self, n=1, timeout=60):
        """Flush the queue (again every 2 s, see wait_deferred) until it is
        empty and return what the sink received: exactly n messages."""
        end = time.monotonic() + timeout
        last = 0.0
        while self.pf.queue() or len(self.pf.sink.messages()) < n:
            if time.monotonic() >= end:
                self.fail("queue not delivered within %ss:\n%s"
                          % (timeout, self.pf.postqueue_p()))
            if time.monotonic() - last >= 2:
                self.pf.flush()
                last = time.monotonic()
            time.sleep(0.2)
        msgs = self.pf.sink.messages()
        self.assertEqual(len(msgs), n, msgs)
        return msgs

    def assert_log_clean(self, *secrets):
        log = self.milter.log_since(self.log_mark)
        maillog = self.pf.maillog_since()
        for s in secrets:
            self.assertNotIn(s, log, "plaintext in sealgate's log")
            self.assertNotIn(s, maillog, "plaintext in the maillog")

    def inbound_msg(self, method="openpgp", size=0):
        """(message, entity, marker): PGP/MIME (or S/MIME with AES-GCM)
        from carol to alice, of about size bytes when size is given."""
        secret = new_marker()
        entity = large_entity(secret, size) if size else alternative_entity(secret)
        if method == "smime":
            msg = smime_message(cms_encrypt(entity, [self.ids.smime[ALICE].cert]))
        else:
            msg = pgp_mime_message(gpg_encrypt(self.ids, entity, [ALICE]))
        return msg, entity, secret

    def assert_decrypted_copy(self, delivered, msg, entity, method="openpgp"):
        self.assertEqual(delivered.rcpts, [ALICE])
        self.check_decrypted(strip_added_received(bytes(delivered)), msg, entity,
                             "yes; method=%s; integrity=%s"
                             % (method, "aead" if method == "smime" else "mdc"))


# --------------------------------------------------------------------------


def throwaway_homes(tmp):
    """Names of the throwaway GnuPG homes (sgk.*) in tmp, sorted."""
    return sorted(n for n in os.listdir(tmp) if n.startswith("sgk."))


def spool_files(pid, spool_dir):
    """Files in spool_dir that process pid holds open: (path, size)."""
    out = []
    real = os.path.realpath(spool_dir) + "/"
    fddir = "/proc/%d/fd" % pid
    try:
        fds = os.listdir(fddir)
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(os.path.join(fddir, fd))
            if target.startswith(real):
                out.append((target, os.stat(os.path.join(fddir, fd)).st_size))
        except OSError:
            pass
    return out


class A_KilledMidMessage(FaultCase):

    SIZE = 8 * 1024 * 1024

    def kill_when(self, what, found, timeout=60):
        """Poll found() until it returns something true, then SIGKILL the
        milter; asserts that it had not given its verdict by then. Returns
        what found() returned."""
        pid = self.milter.proc.pid
        end = time.monotonic() + timeout
        held = None
        while not held and time.monotonic() < end:
            held = found()
            if not held:
                time.sleep(0.005)
        self.assertTrue(held, "the milter never %s" % what)
        os.kill(pid, signal.SIGKILL)
        self.milter.proc.wait(10)
        self.assertNotRegex(self.milter.log_since(self.log_mark), r"verdict=",
                            "the milter decided before it was killed (%r)" % (held,))
        return held

    @with_diagnostics
    def test_sigkill_while_the_milter_holds_a_large_message(self):
        secret = marker()
        msg = large_msg(CAROL, secret, self.SIZE)
        pid = self.milter.proc.pid
        qid = self.relay(ALICE, [CAROL], msg)
        # The milter is busy with the message once its body sits in a file
        # in spool_dir (bodies above 1 MiB); the spool is open until the
        # verdict is given.
        self.kill_when("spooled the message", lambda: spool_files(pid, self.gw.spool))

        self.wait_deferred(qid, r"4\.\d+\.\d+")
        self.assert_nothing_delivered()
        self.assertEqual(self.gw.spool_entries(), [], "files left in the spool")

        self.milter.start()
        msgs = self.flush_and_collect(1)
        self.assertEqual(msgs[0].rcpts, [CAROL])
        self.assert_encrypted_copy(msgs[0], msg, secret)
        self.assertEqual(len(re.findall(r"verdict=accept .*method=openpgp",
                                        self.milter.log_since(self.log_mark))), 1)
        self.assert_log_clean(secret)

    @with_diagnostics
    def test_sigkill_while_the_milter_decrypts(self):
        mtmp = self.state["mtmp"]
        msg, entity, secret = self.inbound_msg(size=self.SIZE)
        qid = self.relay(CAROL, [ALICE], msg)
        # Alice's secret keys are copied into a throwaway GnuPG home in
        # TMPDIR, in which the message is decrypted.
        homes = self.kill_when("made a GnuPG home for the decryption",
                               lambda: throwaway_homes(mtmp))

        self.wait_deferred(qid, r"4\.\d+\.\d+")
        self.assert_nothing_delivered()
        self.assertEqual(self.gw.spool_entries(), [], "files left in the spool")
        # The copy of alice's keys outlived the milter, and perhaps its
        # agent runs on; the next start removes both.
        self.assertEqual(throwaway_homes(mtmp), homes)
        agents = [pid for h in homes for pid in agent_pids(os.path.join(mtmp, h))]
        self.milter.start()
        # The socket listens before the milter is ready; it logs this when
        # it is (after the sweep).
        self.assertIsNotNone(self.wait_sealgate_log(r"listening on "),
                             self.milter.log_since(self.log_mark))
        self.assertEqual(throwaway_homes(mtmp), [], "GnuPG homes left in TMPDIR")
        for pid in agents:
            self.assertTrue(wait_gone(pid), "gpg-agent %d still runs" % pid)
        self.assertRegex(self.milter.log_since(self.log_mark),
                         r"removed %d throwaway GnuPG home\(s\) left in %s by a "
                         r"process that died" % (len(homes), re.escape(mtmp)))

        msgs = self.flush_and_collect(1)
        self.assert_decrypted_copy(msgs[0], msg, entity)
        self.assertEqual(throwaway_homes(mtmp), [])
        self.assert_log_clean(secret)


# --------------------------------------------------------------------------


def agent_pids(home):
    """Pids of the gpg-agent processes whose GnuPG home is home."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) != b"gpg-agent":
            continue
        if home.encode() in argv:
            out.append(int(pid))
    return out


def wait_gone(pid, timeout=10):
    end = time.monotonic() + timeout
    while os.path.exists("/proc/%d" % pid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except OSError:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)
    return True


class B_AgentKilled(FaultCase):

    def kill_agent(self):
        """SIGKILL the gpg-agent of the keystore's GnuPG home (there must be
        one); returns the pids killed."""
        home = os.path.join(self.gw.keystore, "openpgp")
        pids = agent_pids(home)
        self.assertTrue(pids, "no gpg-agent runs for the keystore")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            self.assertTrue(wait_gone(pid), "gpg-agent %d still runs" % pid)
        return pids

    def decrypted(self):
        msg, entity, secret = self.inbound_msg()
        self.relay(CAROL, [ALICE], msg)
        got = self.flush_and_collect(1)
        self.assert_decrypted_copy(got[0], msg, entity)
        self.pf.sink.clear()
        return secret

    @with_diagnostics
    def test_agent_killed_between_messages(self):
        home = os.path.join(self.gw.keystore, "openpgp")
        secrets = [self.decrypted()]
        killed = self.kill_agent()

        # Signing as alice needs the agent of the keystore.
        secret = marker()
        msg = miltertest.make_msg(LIST, secret)
        self.relay(ALICE, [LIST], msg)
        got = self.flush_and_collect(1)
        self.assertEqual(got[0].rcpts, [LIST])
        signtest.assert_pgp_verifies(
            self, signtest.Scratch(os.path.join(self.state["tmp"], "chk")),
            sgtest.canon(strip_added_received(bytes(got[0]))), self.state["carol"],
            self.ids.alice.fingerprint(ALICE))
        self.pf.sink.clear()
        self.assertTrue(set(agent_pids(home)) - set(killed),
                        "no new gpg-agent for the keystore")

        killed = self.kill_agent()
        secrets.append(self.decrypted())
        self.assertTrue(set(agent_pids(home)) - set(killed),
                        "no new gpg-agent for the keystore")
        self.assert_log_clean(secret, *secrets)


# --------------------------------------------------------------------------


class C_KeystoreUnreadable(FaultCase):
    """Each case makes a path unreadable for the milter, sends mail that
    needs it through the relay stage, expects every message deferred with
    a reason in sealgate's log, restores the mode and expects each message
    delivered once: outbound encrypted for carol, inbound decrypted for
    alice."""

    def mail(self, kind):
        """(sender, recipient, message, check of the delivered copy,
        plaintext marker) for kind: "out" (alice to carol), "openpgp" or
        "smime" (carol to alice)."""
        if kind == "out":
            secret = marker()
            msg = miltertest.make_msg(CAROL, secret)
            return (ALICE, CAROL, msg,
                    lambda got: self.assert_encrypted_copy(got, msg, secret), secret)
        msg, entity, secret = self.inbound_msg(kind)
        return (CAROL, ALICE, msg,
                lambda got: self.assert_decrypted_copy(got, msg, entity, kind), secret)

    def check(self, path, kinds, why):
        mails = [self.mail(k) for k in kinds]
        mode = stat.S_IMODE(os.stat(path).st_mode)
        os.chmod(path, 0)
        self.addCleanup(os.chmod, path, mode)
        qids = [self.relay(sender, [rcpt], msg) for sender, rcpt, msg, _c, _s in mails]
        for qid in qids:
            self.wait_deferred(qid, r"\b4\.\d+\.\d+\b")
        self.assert_nothing_delivered()
        self.assertRegex(self.milter.log_since(self.log_mark), why)

        os.chmod(path, mode)
        msgs = self.flush_and_collect(len(mails))
        by_id = {miltertest.header(got, "Message-ID")[0]: got for got in msgs}
        for _sender, rcpt, msg, check, _secret in mails:
            got = by_id.get(miltertest.header(msg, "Message-ID")[0])
            self.assertIsNotNone(got, "not delivered: %r" % msg[:300])
            self.assertEqual(got.rcpts, [rcpt])
            check(got)
        self.assert_log_clean(*[m[4] for m in mails])

    @with_diagnostics
    def test_keystore_directory(self):
        # No snapshot can be built: every message is deferred at MAIL FROM.
        self.check(self.gw.keystore, ["out", "openpgp", "smime"],
                   r"keystore %s: .*Permission denied.*deferred"
                   % re.escape(self.gw.keystore))

    @with_diagnostics
    def test_openpgp_home_of_the_keystore(self):
        # The snapshot in memory still knows the keys; gpg cannot use them.
        self.check(os.path.join(self.gw.keystore, "openpgp"), ["out", "openpgp"],
                   r"verdict=tempfail .*reason=\"decryption: gpg lists no secret key "
                   r"of alice@example\.com .*the keystore cannot be read\"")
        self.assertRegex(self.milter.log_since(self.log_mark),
                         r"verdict=tempfail .*reason=\"encryption: recipient [0-9A-F]{40} "
                         r"refused: No public key, though the keystore snapshot holds it")

    @with_diagnostics
    def test_smime_private_keys_of_the_keystore(self):
        self.check(os.path.join(self.gw.keystore, "smime", "keys"), ["smime"],
                   r"verdict=tempfail .*reason=\"decryption: cannot read the private "
                   r"key [0-9A-F]{64}\.pem of the keystore\"")

    @with_diagnostics
    def test_temporary_directory(self):
        # Decryption for alice opens a throwaway GnuPG home in TMPDIR.
        self.check(self.state["mtmp"], ["openpgp"],
                   r"verdict=tempfail .*reason=\"decryption: cannot create a GnuPG "
                   r"home: .*Permission denied\"")


# --------------------------------------------------------------------------


def try_mount_tmpfs(path, size):
    """Mount a tmpfs of size bytes (0700) on path; None or the reason it
    could not be done."""
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % size,
                         "sgtest-spool", path],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT)
    if cp.returncode != 0:
        return "cannot mount a tmpfs on %s: %s" % (
            path, cp.stdout.decode("utf-8", "replace").strip())
    # Also when the run is cut short; before the directory is removed.
    atexit.register(umount, path)
    return None


def umount(path):
    subprocess.run(["umount", path], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave):
    """Write a file into path's file system until at most `leave` bytes
    are free; returns its path."""
    filler = os.path.join(path, "filler")
    chunk = b"\0" * 65536
    with open(filler, "wb") as f:
        while True:
            room = free_bytes(path) - leave
            if room <= 0:
                break
            try:
                f.write(chunk[:min(room, len(chunk))])
                f.flush()
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    return filler


class D_SpoolFull(FaultCase):

    TMPFS = 8 * 1024 * 1024

    def setUp(self):
        super().setUp()
        why = try_mount_tmpfs(self.gw.spool, self.TMPFS)
        if why:
            SKIPPED.append(why)
            self.skipTest(why)
        self.addCleanup(umount, self.gw.spool)

    def check(self, leave, size, why):
        secret = marker()
        msg = large_msg(CAROL, secret, size)
        filler = fill(self.gw.spool, leave)
        qid = self.relay(ALICE, [CAROL], msg)
        self.wait_deferred(qid, r"\b451 4\.3\.0\b")
        self.assert_nothing_delivered()
        self.assertRegex(self.milter.log_since(self.log_mark), why)
        os.unlink(filler)
        self.assertEqual(self.gw.spool_entries(), [])

        msgs = self.flush_and_collect(1)
        self.assertEqual(msgs[0].rcpts, [CAROL])
        self.assert_encrypted_copy(msgs[0], msg, secret)
        self.assert_log_clean(secret)

    @with_diagnostics
    def test_message_does_not_fit(self):
        self.check(0, 2 * SPOOL_MEMORY, r"cannot spool body.*No space left on device")

    @with_diagnostics
    def test_encrypted_form_does_not_fit(self):
        size = 2 * SPOOL_MEMORY
        self.check(size + 256 * 1024, size, r"No space left on device")


# --------------------------------------------------------------------------


class E_PolicyDeleted(FaultCase):

    def usr1(self):
        os.kill(self.milter.proc.pid, signal.SIGUSR1)

    @with_diagnostics
    def test_policy_file_deleted_while_running(self):
        saved = self.gw.policy + ".saved"
        os.rename(self.gw.policy, saved)
        self.addCleanup(lambda: os.path.exists(saved) and os.rename(saved, self.gw.policy))
        self.usr1()
        m = self.wait_sealgate_log(r"(?m)^.*reload of .* failed.*$")
        self.assertIsNotNone(m, self.milter.log_since(self.log_mark))
        self.assertIn(self.gw.policy, m.group(0))
        self.assertRegex(m.group(0), r"stays in force")
        self.assertRegex(self.milter.log_since(self.log_mark),
                         r"%s: cannot open: No such file or directory"
                         % re.escape(self.gw.policy))
        self.assertTrue(self.milter.running())

        # The loaded policy goes on: its subject tag refuses mail to a
        # recipient without a key, mail to carol is encrypted.
        code, text, _refused = self.pf.send_smtplib(
            ALICE, [NOKEY], miltertest.make_msg(NOKEY, marker(), subject="[secure] plan"))
        self.assertEqual(code, 550, text)
        self.assertIn("subject-tag", text)
        secret = marker()
        msg = miltertest.make_msg(CAROL, secret)
        self.relay(ALICE, [CAROL], msg)
        got = self.flush_and_collect(1)
        self.assert_encrypted_copy(got[0], msg, secret)

        os.rename(saved, self.gw.policy)
        mark = self.milter.log_size()
        self.usr1()
        self.log_mark = mark
        self.assertIsNotNone(self.wait_sealgate_log(
            r"policy %s reloaded" % re.escape(self.gw.policy)),
            self.milter.log_since(mark))


if __name__ == "__main__":
    sgtest.main_with_skips(SKIPPED)
