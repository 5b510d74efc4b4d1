"""The keystore snapshot of a running milter: lookups start no process, and
every keystore change is in force for the next message.

A private Postfix (tests/lib/postfix.py) calls `sealgate milter` and relays
to smtp-sink. The gateway (internal domain example.com, outbound default
encrypt-if-key with OpenPGP, recipients in lists.example: sign with
OpenPGP; the Postfix on loopback may sign for its senders) holds
alice@example.com's OpenPGP key pair; carol's key is in her own GnuPG home,
where mail to her is decrypted with gpg.

The milter is traced with `strace -f -e trace=execve` while messages pass:

  1) mail to a partner without a key (sent plain under encrypt-if-key) and
     to an internal address starts no process at all; after `keys import`
     of carol's key the next messages to her arrive encrypted, and the
     milter started one `gpg --list-keys` for the new snapshot and one
     `gpg --encrypt` per message.
  2) after `keys remove` of carol's key the next message arrives plain.
  3) mail to lists.example arrives signed by alice; after `keys deactivate
     alice@example.com` the next one is refused (550, no signing key);
     after `reactivate` it is signed again.
  4) a snapshot that cannot be built (a certificate file in the store that
     does not parse) after carol's key is imported defers mail (4xx), and
     the log says why; once the store is repaired the next messages to
     carol arrive encrypted, with no signal and no further change.
  5) S/MIME encryption uses the certificate the snapshot judged: with
     frank's certificate file overwritten in place by mallory's (no
     keystore change recorded, so the snapshot stays), mail to frank is
     still encrypted to frank's certificate, which his key decrypts and
     mallory's does not.
"""

import os
import re
import signal
import subprocess
import time
import unittest

import inboundtest
import miltertest
import sgtest
import smimetest
from inboundtest import ALICE, CAROL
from miltertest import make_msg, marker, strip_added_received, top_content_type, \
    with_diagnostics

STATE = {}

BINARY = miltertest.require_tools()
sgtest.require_program("swaks")
sgtest.require_program("strace")

NOKEY = "zoe@nokey.example"
FRANK = "frank@smime.example"
INTERNAL = "bob@example.com"
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
    - name: smime-partners
      when: { recipient_domain: [smime.example] }
      action: encrypt
      methods: [smime]
      on_missing_key: reject
"""


def setUpModule():
    tmp = sgtest.tmpdir("sgsn")
    os.chmod(tmp, 0o755)          # the postfix user reaches into it
    ids = inboundtest.Identities(tmp, smime=False)
    gw = ids.gateway(os.path.join(tmp, "gw"), POLICY, openpgp=(ALICE,), smime=())
    carol_pub = sgtest.export_public_key(tmp, ids.sender, CAROL)
    STATE.update(tmp=tmp, gw=gw, ids=ids, carol=ids.sender, carol_pub=carol_pub)
    miltertest.start_milter_and_postfix(STATE, BINARY)


def tearDownModule():
    miltertest.tear_down(STATE)
    if "ids" in STATE:
        STATE["ids"].kill_agents()


class Exec:
    """strace -f of every thread of a running process, for execve."""

    def __init__(self, pid, path):
        self.path = path
        self.proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none",
             "-s", "256", "-o", path, "-p", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end and not self._traced(pid):
            time.sleep(0.05)
        time.sleep(0.3)

    @staticmethod
    def _traced(pid):
        with open("/proc/%d/status" % pid) as f:
            return re.search(r"(?m)^TracerPid:\s*[1-9]", f.read()) is not None

    def stop(self):
        """Detaches; returns the execve calls seen (the lines of the trace)."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(15)
        with open(self.path) as f:
            return [l for l in f.read().splitlines() if "execve(" in l]


class PostfixSnapshot(miltertest.MilterTestCase):

    state = STATE

    def keys(self, *args):
        cp = self.gw.run("keys", "-c", self.gw.policy, *args)
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        return cp

    def send(self, rcpt, secret):
        """A message from alice to rcpt; returns (message, delivered)."""
        msg = make_msg(rcpt, secret)
        code, text, refused = self.pf.send_smtplib(ALICE, [rcpt], msg)
        self.assertEqual((code, refused), (250, {}), text)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=0.5)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertTrue(self.pf.wait_queue_empty(10))
        self.pf.sink.clear()
        return msg, msgs[0]

    def trace(self, name):
        return Exec(self.milter.proc.pid, os.path.join(self.state["tmp"], name))

    @with_diagnostics
    def test_1_lookups_start_no_process(self):
        tr = self.trace("exec1.trace")
        try:
            for rcpt in (NOKEY, CAROL):
                secret = marker()
                msg, delivered = self.send(rcpt, secret)
                self.assert_plain_copy(delivered, msg, secret)
            secret = marker()
            _msg, delivered = self.send(INTERNAL, secret)
            self.assertIn(secret.encode(), bytes(delivered))
        finally:
            calls = tr.stop()
        self.assertEqual(calls, [], "processes started for pass-through mail")

        self.keys("import", self.state["carol_pub"])
        tr = self.trace("exec2.trace")
        try:
            sent = []
            for _n in range(2):
                secret = marker()
                sent.append((secret,) + self.send(CAROL, secret))
        finally:
            calls = tr.stop()
        for secret, msg, delivered in sent:
            self.assert_encrypted_copy(delivered, msg, secret)
        # One listing of the keyring for the new snapshot and one export
        # of carol's key into the snapshot's rnp contexts; the encryption
        # itself runs in process (README, "OpenPGP encryption in process").
        self.assertEqual(len(calls), 2, calls)
        self.assertRegex(calls[0], r'execve\("[^"]*/gpg".*"--list-keys"')
        self.assertRegex(calls[1], r'execve\("[^"]*/gpg".*"--export"')

    @with_diagnostics
    def test_2_removed_key_is_not_used(self):
        self.keys("import", self.state["carol_pub"])
        secret = marker()
        msg, delivered = self.send(CAROL, secret)
        self.assert_encrypted_copy(delivered, msg, secret)
        self.keys("remove", CAROL)
        secret = marker()
        msg, delivered = self.send(CAROL, secret)
        self.assert_plain_copy(delivered, msg, secret)

    def assert_signed(self, delivered):
        self.assertEqual(top_content_type(delivered), "multipart/signed")
        self.assertIn(b"-----BEGIN PGP SIGNATURE-----", bytes(delivered))

    @with_diagnostics
    def test_3_deactivated_address_no_longer_signs(self):
        _msg, delivered = self.send(LIST, marker())
        self.assert_signed(delivered)
        self.keys("deactivate", ALICE)
        try:
            code, text, _r = self.pf.send_smtplib(ALICE, [LIST],
                                                  make_msg(LIST, marker()))
            self.assertEqual(code, 550, text)
            self.assertIn("no usable signing key", text)
        finally:
            self.keys("reactivate", ALICE)
        _msg, delivered = self.send(LIST, marker())
        self.assert_signed(delivered)

    @with_diagnostics
    def test_5_smime_encrypts_to_the_certificate_the_snapshot_judged(self):
        ca = smimetest.TestCA(os.path.join(self.state["tmp"], "ca5"))
        frank = ca.issue("Frank Smime", [FRANK])
        mallory = ca.issue("Mallory", [FRANK], basename="mallory")
        self.keys("import", "--trust-anchor", ca.cert)
        self.keys("import", frank.cert)
        path = os.path.join(self.gw.keystore, "smime", "certs",
                            smimetest.cert_fingerprint(frank.cert) + ".pem")
        self.assertTrue(os.path.exists(path), path)

        def sent_to_frank():
            secret = marker()
            msg, delivered = self.send(FRANK, secret)
            self.assertNotIn(secret.encode(), delivered.raw)
            der = smimetest.smime_der(self, msg, strip_added_received(bytes(delivered)),
                                      "enveloped-data")
            return secret, der

        secret, der = sent_to_frank()       # the snapshot is built
        rc, plain, err = smimetest.cms_decrypt(der, frank)
        self.assertEqual(rc, 0, err)
        self.assertIn(secret.encode(), plain)
        with open(mallory.cert, "rb") as src, open(path, "r+b") as dst:
            dst.write(src.read())
            dst.truncate()
        secret, der = sent_to_frank()
        rc, plain, err = smimetest.cms_decrypt(der, frank)
        self.assertEqual(rc, 0, err)
        self.assertIn(secret.encode(), plain)
        rc, plain, err = smimetest.cms_decrypt(der, mallory)
        self.assertNotIn(secret.encode(), plain if rc == 0 else b"")

    @with_diagnostics
    def test_4_failed_build_defers_mail_until_repaired(self):
        """A keystore change whose snapshot cannot be built defers mail
        (4xx) rather than deciding from the old snapshot, which could still
        sign as a deactivated user; once the keystore can be read again the
        next message uses it, without a signal or another change."""
        self.gw.run("keys", "-c", self.gw.policy, "remove", CAROL)  # if there
        secret = marker()
        msg, delivered = self.send(CAROL, secret)
        self.assert_plain_copy(delivered, msg, secret)

        bad = os.path.join(self.gw.keystore, "smime", "certs", "BAD.pem")
        with open(bad, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n"
                    "-----END CERTIFICATE-----\n")
        try:
            self.keys("import", self.state["carol_pub"])
            code, text, _r = self.pf.send_smtplib(ALICE, [CAROL],
                                                  make_msg(CAROL, marker()))
            self.assertEqual(code // 100, 4, text)
            self.assertIsNotNone(self.wait_sealgate_log(
                r"cannot build a new snapshot: smime/certs: 0 of 1 certificate "
                r"files could be read; messages are deferred"))
        finally:
            os.unlink(bad)
        deadline = time.monotonic() + 30
        while True:
            secret = marker()
            msg = make_msg(CAROL, secret)
            code, text, _r = self.pf.send_smtplib(ALICE, [CAROL], msg)
            if code == 250 or time.monotonic() > deadline:
                break
            self.assertEqual(code // 100, 4, text)
            time.sleep(0.2)
        self.assertEqual(code, 250, text)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=0.5)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertTrue(self.pf.wait_queue_empty(10))
        self.pf.sink.clear()
        self.assert_encrypted_copy(msgs[0], msg, secret)
        self.assertTrue(self.milter.running(), "the milter stopped")


if __name__ == "__main__":
    unittest.main()
