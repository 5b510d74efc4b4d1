"""Policy rules, live reload and mail direction through a real Postfix.

A private Postfix (tests/lib/postfix.py) calls `sealgate milter` from its
smtpd and relays what it accepts to smtp-sink. carol@partner.example has a
key in the gateway's keystore; her secret key lives only in a separate
GnuPG home, where every encrypted delivery is decrypted with gpg.
nokey@other.example has no key.

  a) a "[secure]" subject tag (rule subject-tag, action encrypt) to a keyless
     recipient: refused after DATA with 550 5.7.1 naming the rule and the
     recipient; nothing reaches the sink, nothing stays queued.
  b) the same tag (any case) to carol: delivered as PGP/MIME, the tag removed
     from the Subject, gpg decrypts it to the original entity.
  c) a client outside trusted_networks that claims an internal sender is not
     outbound: mail to carol arrives unchanged, and a "[secure]" message to
     the keyless recipient is neither refused nor rewritten.
  d) the same client after SMTP AUTH is outbound: mail to carol arrives
     encrypted. Postfix authenticates against a small Dovecot-protocol auth
     server (tests/lib/saslauth.py, smtpd_sasl_type = dovecot).
  e) SIGUSR1 reloads the policy: "none" -> plain; a broken file (YAML syntax
     error, then an unknown key) is reported as FILE:LINE:COL and the old
     policy stays in force -> still plain; a valid "encrypt-if-key" file ->
     "reloaded" and the next message is encrypted.
"""

import os
import re
import signal
import time
import unittest

import miltertest
import sgtest
from saslauth import DovecotAuthServer
from miltertest import ALICE, CAROL, header, make_msg, marker, with_diagnostics

NOKEY = "nokey@other.example"
ALICE_PASSWORD = "alice-sgtest-pw"

STATE = {}

BINARY = miltertest.require_tools()
sgtest.require_program("swaks")


# --------------------------------------------------------------------------
# Policies

def policy_text(trusted="127.0.0.0/8", action="encrypt-if-key",
                subject_rule=True, extra_default=""):
    text = ("version: 1\n"
            "gateway: { keystore: \"store\", spool_dir: \"spool\", "
            "trusted_networks: [%s] }\n"
            "internal_domains: [example.com]\n"
            "outbound:\n"
            "  default: { action: %s, methods: [openpgp]%s }\n"
            % (trusted, action, extra_default))
    if subject_rule:
        text += ("  rules:\n"
                 "    - name: subject-tag\n"
                 "      when: { subject_tag: \"[secure]\" }\n"
                 "      action: encrypt\n")
    return text


POLICY_TAG = policy_text()
POLICY_UNTRUSTED = policy_text(trusted="192.0.2.0/24")
POLICY_NONE = policy_text(action="none", subject_rule=False)
POLICY_RELOADED = policy_text(action="encrypt-if-key", subject_rule=False)

# A YAML syntax error on line 5 ("mapping values are not allowed here").
POLICY_SYNTAX_ERROR = policy_text(action="encrypt-if-key",
                                  subject_rule=False).replace(
    "  default: { action: encrypt-if-key, methods: [openpgp] }\n",
    "  default: action: encrypt-if-key\n")
assert "  default: action: encrypt-if-key\n" in POLICY_SYNTAX_ERROR
SYNTAX_ERROR_LINE = 5
# Valid YAML, but an unknown key on line 5.
POLICY_UNKNOWN_KEY = policy_text(action="encrypt-if-key", subject_rule=False,
                                 extra_default=", colour: blue")
UNKNOWN_KEY_LINE = 5


# --------------------------------------------------------------------------
# Module set-up


def setUpModule():
    miltertest.set_up_gateway(STATE, "sgpp", POLICY_TAG,
                              check=(POLICY_UNTRUSTED, POLICY_NONE, POLICY_RELOADED))
    # The postfix user reaches the auth socket in the (0755) test directory.
    auth = DovecotAuthServer(os.path.join(STATE["tmp"], "auth"),
                             {ALICE: ALICE_PASSWORD})
    STATE.update(auth=auth, policy=POLICY_TAG)
    miltertest.start_milter_and_postfix(STATE, BINARY, extra_main={
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": auth.path,
    })


def tearDownModule():
    miltertest.tear_down(STATE)
    auth = STATE.get("auth")
    if auth is not None:
        auth.close()


# --------------------------------------------------------------------------
# Messages


def with_subject(msg, subject):
    """msg with its (single-line) Subject: field replaced."""
    out, n = re.subn(rb"(?m)^Subject: [^\n]*$",
                     b"Subject: " + subject.encode(), msg, count=1)
    assert n == 1
    return out


class PostfixPolicy(miltertest.MilterTestCase):

    state = STATE

    def setUp(self):
        super().setUp()
        self.auth = STATE["auth"]

    def extra_diagnostics(self):
        return "--- policy file ---\n%s" % self.read_policy()

    # -- helpers ---------------------------------------------------------

    def read_policy(self):
        try:
            with open(self.gw.policy) as f:
                return f.read()
        except OSError:
            return ""

    def write_policy(self, text):
        tmp = self.gw.policy + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.gw.policy)

    def use_policy(self, text):
        """Run the milter with this policy (restarted when it differs from
        the one it was started with)."""
        if STATE.get("policy") == text and self.milter.running():
            return
        self.milter.stop()
        self.write_policy(text)
        STATE["policy"] = None
        self.milter.start()
        STATE["policy"] = text
        self.log_mark = self.milter.log_size()

    def deliver_one(self, rcpt, msg, extra_args=()):
        """Submit msg to rcpt and return the one copy the sink receives."""
        self.pf.sink.clear()
        self.submit([rcpt], msg, extra_args=extra_args)
        msgs = self.pf.wait_for_sink(1, timeout=30, settle=1.0)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].mail_from, ALICE)
        self.assertEqual(msgs[0].rcpts, [rcpt])
        self.assertTrue(self.pf.wait_queue_empty(10), self.pf.postqueue_p())
        return msgs[0]

    def reload(self, text, expect_rx):
        """Rewrite the policy file, send SIGUSR1 and wait for the log line
        matching expect_rx. Returns sealgate's log text of this reload."""
        self.log_mark = self.milter.log_size()
        self.write_policy(text)
        STATE["policy"] = None      # no longer the file it started with
        self.milter.proc.send_signal(signal.SIGUSR1)
        m = self.wait_sealgate_log(expect_rx, timeout=10)
        log = self.milter.log_since(self.log_mark)
        self.assertIsNotNone(m, "no %r in sealgate's log after SIGUSR1:\n%s"
                             % (expect_rx, log))
        self.assertTrue(self.milter.running(),
                        "sealgate exited on SIGUSR1:\n%s" % log)
        return log

    # -- a) subject tag, no key: refused at SMTP time ---------------------

    @with_diagnostics
    def test_a_subject_tag_without_key_is_refused(self):
        self.use_policy(POLICY_TAG)
        for subject in ("[secure] Quarterly figures",
                        "Re: [SECURE] Quarterly figures"):
            secret = marker()
            orig = make_msg(NOKEY, secret, subject=subject)
            self.pf.mark_maillog()
            rc, transcript = self.pf.send_swaks(ALICE, [NOKEY], orig)
            self.assertNotEqual(rc, 0, transcript)
            # The refusal comes after DATA, with the rule and the recipient.
            self.assertRegex(
                transcript,
                r"-> \.\s*\n<\*\* 550 5\.7\.1 encryption required by rule "
                r"\"subject-tag\"; no usable key for: <?%s>?" % re.escape(NOKEY))
            self.assertNotIn("queued as", transcript)
            m = self.pf.wait_maillog(
                r"(\w+): milter-reject: END-OF-MESSAGE from [^:]*: 5\.7\.1 "
                r"encryption required by rule \"subject-tag\"", timeout=10)
            self.assertIsNotNone(m, "no milter-reject at end of message "
                                 "in the maillog")
            qid = m.group(1)
            log = self.wait_sealgate_log(
                r"(?m)^.*\b%s: [^\n]*\breject\b[^\n]*$" % re.escape(qid), 10)
            self.assertIsNotNone(log, "sealgate did not log the refusal "
                                 "of %s" % qid)
            self.assertIn("subject-tag", log.group(0))
            self.assertNotIn(secret, self.milter.log_since(self.log_mark),
                             "message content in sealgate's log")
        time.sleep(2)   # a queue run or two
        self.assertEqual(self.pf.sink.files(), [],
                         "a refused message reached the sink")
        self.assertEqual(self.pf.queue(), [], "a refused message is queued")

    # -- b) subject tag with a key: encrypted, tag removed ----------------

    @with_diagnostics
    def test_b_subject_tag_with_key_is_encrypted_and_tag_removed(self):
        self.use_policy(POLICY_TAG)
        for subject, stripped in (("[secure] Quarterly figures",
                                   "Quarterly figures"),
                                  ("Re: [Secure] Quarterly figures",
                                   "Re: Quarterly figures")):
            secret = marker()
            orig = make_msg(CAROL, secret, subject=subject)
            got = self.deliver_one(CAROL, orig)
            self.assertEqual(header(got, "Subject"), [stripped])
            self.assertNotIn(b"[secure]", bytes(got).lower())
            expected = with_subject(orig, stripped)
            plain = self.assert_encrypted_copy(got, expected, secret)
            self.assertNotIn(b"[secure]", plain.lower())

    # -- c) untrusted client claiming an internal sender ------------------

    @with_diagnostics
    def test_c_untrusted_client_is_not_outbound(self):
        # 127.0.0.1 is not in trusted_networks here: Postfix's connections
        # come from an untrusted client.
        self.use_policy(POLICY_UNTRUSTED)
        secret = marker()
        orig = make_msg(CAROL, secret)
        got = self.deliver_one(CAROL, orig)
        self.assert_plain_copy(got, orig, secret)

        # Outbound rules do not apply either: no refusal, tag kept.
        secret = marker()
        orig = make_msg(NOKEY, secret, subject="[secure] Quarterly figures")
        got = self.deliver_one(NOKEY, orig)
        self.assert_plain_copy(got, orig, secret)

    # -- d) the same client after SMTP AUTH -------------------------------

    @with_diagnostics
    def test_d_authenticated_client_is_outbound(self):
        self.use_policy(POLICY_UNTRUSTED)
        auth_args = ["--auth", "PLAIN", "--auth-user", ALICE,
                     "--auth-password", ALICE_PASSWORD]

        # A wrong password is refused by Postfix (the auth server works).
        rc, transcript = self.pf.send_swaks(
            ALICE, [CAROL], make_msg(CAROL, marker()),
            extra_args=["--auth", "PLAIN", "--auth-user", ALICE,
                        "--auth-password", "wrong"])
        self.assertNotEqual(rc, 0, transcript)
        self.assertRegex(transcript, r"<\*\* 535 5\.7\.8 ")
        self.assertNotIn("queued as", transcript)

        secret = marker()
        orig = make_msg(CAROL, secret)
        got = self.deliver_one(CAROL, orig, extra_args=auth_args)
        self.assertIn((ALICE, True), self.auth.logins)
        self.assertTrue(self.pf.wait_maillog(
            r"sasl_method=PLAIN, sasl_username=%s" % re.escape(ALICE),
            timeout=5), "Postfix did not log the SMTP AUTH login")
        self.assert_encrypted_copy(got, orig, secret)

    # -- e) live reload on SIGUSR1 ----------------------------------------

    @with_diagnostics
    def test_e_reload_on_sigusr1(self):
        self.use_policy(POLICY_NONE)
        pid = self.milter.proc.pid

        # outbound.default.action: none -> plain.
        secret = marker()
        orig = make_msg(CAROL, secret, subject="before reload")
        self.assert_plain_copy(self.deliver_one(CAROL, orig), orig, secret)

        # A file with errors: reported as FILE:LINE:COL, old policy kept.
        for text, line in ((POLICY_SYNTAX_ERROR, SYNTAX_ERROR_LINE),
                           (POLICY_UNKNOWN_KEY, UNKNOWN_KEY_LINE)):
            log = self.reload(text, r"previous policy stays in force")
            self.assertRegex(log, r"%s:%d:\d+: \S" % (re.escape(self.gw.policy),
                                                       line))
            self.assertNotIn("reloaded", log)
            secret = marker()
            orig = make_msg(CAROL, secret, subject="after a failed reload")
            self.assert_plain_copy(self.deliver_one(CAROL, orig), orig, secret)

        # A valid file with encrypt-if-key: reloaded, next message encrypted.
        log = self.reload(POLICY_RELOADED, r"reloaded")
        self.assertNotIn("previous policy stays in force", log)
        secret = marker()
        orig = make_msg(CAROL, secret, subject="after the reload")
        self.assert_encrypted_copy(self.deliver_one(CAROL, orig), orig, secret)

        self.assertTrue(self.milter.running())
        self.assertEqual(self.milter.proc.pid, pid,
                         "sealgate was restarted, not reloaded")


if __name__ == "__main__":
    unittest.main()
