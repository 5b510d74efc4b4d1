"""Shared set-up and checks for the milter tests (tests/milter) that run
`sealgate milter` behind a private Postfix (postfix.py).

set_up_gateway() makes a gateway whose keystore holds the public key of
carol@partner.example (her secret key lives only in her own GnuPG home);
start_milter_and_postfix() starts the milter and a Postfix that calls it.
Both keep what they make in a dict shared by the tests of a file (the
`state` of a MilterTestCase); tear_down() stops it all.
"""

import functools
import os
import re
import sys
import time
import unittest
import uuid

import postfix
import sgtest

ALICE = sgtest.SENDER
CAROL = sgtest.CAROL


def require_tools():
    """Skip the file unless the binary, a private Postfix and gpg are
    available; returns the binary's path."""
    binary = sgtest.require_binary()
    ok, why = postfix.can_run()
    if not ok:
        sgtest.skip_file(why)
    sgtest.require_program("gpg")
    return binary


# --------------------------------------------------------------------------
# Module set-up and tear-down


def set_up_gateway(state, prefix, policy=None, check=()):
    """A temporary directory (0755: the postfix user reaches sockets in it),
    carol's GnuPG home with a new key, and a gateway in tmp/gw whose keystore
    holds her public key. policy: the text of the gateway's policy file
    (default: sgtest.Gateway's); it is checked with `sealgate policy check`,
    and so is each text in check. Adds tmp, carol and gw to state."""
    tmp = sgtest.tmpdir(prefix)
    os.chmod(tmp, 0o755)
    carol, _fpr = sgtest.new_key_home(tmp, CAROL)
    gw = sgtest.Gateway(os.path.join(tmp, "gw"))
    if policy is not None:
        with open(gw.policy, "w") as f:
            f.write(policy)
    gw.check_policy()
    for text in check:
        gw.check_policy(text)
    sgtest.import_public_keys(gw, tmp, [(carol, CAROL)])
    state.update(tmp=tmp, carol=carol, gw=gw)
    return state


def start_milter_and_postfix(state, binary, extra_main=None, unix=True):
    """Start `sealgate milter` with the gateway's policy (log in
    tmp/sealgate.log) and a private Postfix that calls it; adds milter and
    pf to state. The milter listens on a unix socket in tmp, as production
    is advised to, or (unix=False) on 127.0.0.1."""
    gw = state["gw"]
    milter = postfix.MilterProcess(
        lambda spec: [binary, "milter", "-c", gw.policy, "-s", spec, "-f"] +
        sgtest.milter_user_args(),
        os.path.join(state["tmp"], "sealgate.log"),
        unix=os.path.join(state["tmp"], "milter.sock") if unix else None)
    milter.start()
    state["milter"] = milter
    state["pf"] = postfix.PrivatePostfix(milter.postfix_spec, extra_main=extra_main)
    return state


def tear_down(state):
    """Stop Postfix and the milter, and carol's GnuPG agent."""
    pf = state.get("pf")
    if pf is not None:
        pf.stop()
    milter = state.get("milter")
    if milter is not None:
        milter.stop()
    carol = state.get("carol")
    if carol is not None:
        carol.kill()


# --------------------------------------------------------------------------
# Messages and what smtp-sink received


def marker():
    return "PLAINTEXT-MARKER-%s" % uuid.uuid4().hex


def make_msg(to, body_marker, subject="Quarterly figures"):
    """A plain-text message from alice to `to`, body_marker in its body, with
    LF line ends and nothing swaks would expand (no '%' tokens, no
    backslashes)."""
    headers = sgtest.std_headers(sender="Alice Example <%s>" % ALICE,
                                 to="<%s>" % to, subject=subject)
    headers += [("Content-Type", "text/plain; charset=us-ascii"),
                ("Content-Transfer-Encoding", "7bit")]
    body = ("Hello,\n\nthe figures are below.\n%s\nRegards,\nAlice\n"
            % body_marker)
    msg = sgtest.make_message(headers, body, eol=b"\n")
    assert b"%" not in msg and b"\\" not in msg
    return msg


_ADDED_RECEIVED = re.compile(rb"^Received: [^\n]*(?:\n[ \t][^\n]*)*", re.I)


def strip_added_received(msg):
    """Remove the Received: fields the private Postfix prepended (the by-host
    is one of its own names); the original's own Received: stays."""
    while True:
        m = _ADDED_RECEIVED.match(msg)
        if not m or b"sgtest.invalid (Postfix" not in m.group(0):
            return msg
        msg = msg[m.end() + 1:]


def header(msg, name):
    fields, _ = sgtest.split_header_body(sgtest.canon(msg))
    return [sgtest.norm_value(v) for v in sgtest.header_values(fields, name)]


def top_content_type(msg):
    vals = header(msg, "Content-Type")
    return sgtest.parse_content_type(vals[0])[0] if vals else None


def with_diagnostics(fn):
    """On failure, print the maillog and sealgate's log of this test."""
    @functools.wraps(fn)
    def wrapper(self):
        try:
            fn(self)
        except unittest.SkipTest:
            raise
        except BaseException:
            sys.stderr.write("\n=== %s failed; diagnostics ===\n%s\n"
                             % (fn.__name__, self.diagnostics()))
            raise
    return wrapper


# --------------------------------------------------------------------------
# Test case base


class MilterTestCase(unittest.TestCase):
    """Tests against the milter and Postfix of the module's state dict (the
    class attribute `state`). Each test starts with the milter running, an
    empty queue and sink, and marks in the maillog and in sealgate's log."""

    state = None

    def setUp(self):
        self.pf = self.state["pf"]
        self.milter = self.state["milter"]
        self.carol = self.state["carol"]
        self.gw = self.state["gw"]
        if not self.milter.running():
            self.milter.start()
        self.reset_queue()
        self.pf.sink.clear()
        self.pf.mark_maillog()
        self.log_mark = self.milter.log_size()

    def reset_queue(self):
        """Start each test with an empty queue (mail left over from a failed
        test must not show up in the next one)."""
        if self.pf.queue():
            self.pf.flush()
            if not self.pf.wait_queue_empty(10):
                self.pf.purge_queue()
        time.sleep(0.5)

    def extra_diagnostics(self):
        """More text for diagnostics(), each part ending in a line break."""
        return ""

    def diagnostics(self):
        return ("--- maillog of this test ---\n%s\n--- postqueue -p ---\n%s\n"
                "--- sealgate log of this test ---\n%s\n%s--- sink files ---\n%s"
                % (self.pf.maillog_since(), self.pf.postqueue_p(),
                   self.milter.log_since(self.log_mark), self.extra_diagnostics(),
                   "\n".join(self.pf.sink.files())))

    def submit(self, rcpts, msg, port=None, extra_args=()):
        """Send msg from alice with swaks; asserts it was queued and returns
        (queue id, transcript)."""
        rc, transcript = self.pf.send_swaks(ALICE, rcpts, msg, port=port,
                                            extra_args=extra_args)
        self.assertEqual(rc, 0, "swaks failed:\n%s" % transcript)
        m = re.search(r"<-  250 2\.0\.0 Ok: queued as (\w+)", transcript)
        self.assertIsNotNone(m, "message not queued:\n%s" % transcript)
        return m.group(1), transcript

    def wait_sealgate_log(self, rx, timeout=10):
        """Wait until sealgate's log since self.log_mark matches the regex;
        returns the match or None."""
        rx = re.compile(rx)
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.milter.log_since(self.log_mark))
            if m or time.monotonic() >= end:
                return m
            time.sleep(0.1)

    def assert_encrypted_copy(self, delivered, expected, secret):
        """delivered (a SinkMessage) is the PGP/MIME form of expected (the
        original with the header changes the gateway must make): no
        plaintext, other header fields kept, gpg in carol's home decrypts
        it to the original entity."""
        self.assertNotIn(secret.encode(), delivered.raw,
                         "plaintext marker in the delivered bytes")
        self.assertEqual(top_content_type(delivered), "multipart/encrypted")
        ct = header(delivered, "Content-Type")[0]
        self.assertRegex(ct, r'(?i)protocol="?application/pgp-encrypted"?')
        out = sgtest.canon(strip_added_received(bytes(delivered)))
        sgtest.assert_outer_headers_kept(self, expected, out)
        for name in ("From", "To", "Subject", "Date", "Message-ID"):
            self.assertEqual(header(delivered, name), header(expected, name),
                             "%s differs" % name)
        plain = sgtest.assert_decrypts_to_original(self, self.carol,
                                                   expected, out)
        self.assertIn(secret.encode(), plain)
        return plain

    def assert_plain_copy(self, delivered, original, secret):
        """delivered is original, byte for byte, apart from Postfix's own
        Received: fields."""
        self.assertIn(secret.encode(), bytes(delivered))
        self.assertNotEqual(top_content_type(delivered), "multipart/encrypted")
        self.assertNotIn(b"-----BEGIN PGP MESSAGE-----", bytes(delivered))
        self.assertEqual(strip_added_received(bytes(delivered)), original,
                         "the message was changed")
