"""The MIME part-count and nesting bounds stop the reading, not follow it.

Messages with two million empty parts (14 MB), with multiparts nested 100,000
deep, and with messages embedded in messages far beyond 32 levels are refused
outbound (554 5.6.0 where protection applies) and delivered as they came
inbound (`X-Sealgate-Decrypted: failed; reason=too-deep`), while the
`sealgate process` child stays within a small memory bound: the boundary scan
counts before GMime builds any object. Messages just within the bounds still
pass. Times are printed, never asserted.
"""

import os
import subprocess
import sys
import time
import unittest

import sgtest
from sgtest import BOB, CAROL, SENDER, make_message, std_headers

MAX_RSS_KB = 200 * 1024           # generous; the unbounded parse took 2.6 GB
REFUSAL = ("554 5.6.0 malformed MIME message (MIME nesting deeper than 32 levels "
           "or more than 10000 parts)")


# Runs a command from a fresh, small interpreter and writes the child's
# peak RSS (KB) to the file named first: a child forked from this test
# process would start with the test's own (large) memory counted.
RUNNER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_pid, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def flat(parts):
    body = b"--b\r\n\r\n" * parts + b"--b--\r\n"
    return make_message(std_headers() + [("Content-Type", 'multipart/mixed; boundary="b"')],
                        body)


def nested(depth):
    head, tail = [], []
    for i in range(depth):
        head.append(b"--n%d\r\nContent-Type: multipart/mixed; boundary=\"n%d\"\r\n\r\n"
                    % (i, i + 1))
        tail.append(b"--n%d--\r\n" % (i + 1))
    body = b"".join(head) + b"--n%d\r\n\r\nleaf\r\n" % depth + b"".join(reversed(tail)) \
        + b"--n0--\r\n"
    return make_message(std_headers() + [("Content-Type", 'multipart/mixed; boundary="n0"')],
                        body)


def embedded(depth):
    inner = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for _ in range(depth):
        inner = b"Content-Type: message/rfc822\r\n\r\nSubject: x\r\n" + inner
    fields, body = sgtest.split_header_body(inner)
    return make_message(std_headers() + fields, body)


class MimeBounds(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp, [(cls.carol, _fpr), (cls.bob, _fpr2)] = sgtest.class_set_up(
            "sgmb", CAROL, BOB)
        cls.gw = sgtest.Gateway(os.path.join(cls.tmp, "gw"))
        sgtest.import_public_keys(cls.gw, cls.tmp, [(cls.carol, CAROL)])

    def process(self, msg, rcpt):
        """(exit code, output, stderr, peak RSS of the child in KB)."""
        inp = os.path.join(self.tmp, "in.eml")
        out = os.path.join(self.tmp, "out.eml")
        with open(inp, "wb") as f:
            f.write(msg)
        if os.path.exists(out):
            os.unlink(out)
        rss_file = os.path.join(self.tmp, "rss")
        start = time.monotonic()
        cp = subprocess.run([sys.executable, "-c", RUNNER, rss_file, self.gw.bin, "process",
                             "-c", self.gw.policy, "--from", SENDER, "--to", rcpt,
                             "--client-ip", "127.0.0.1", "-i", inp, "-o", out],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, timeout=sgtest.CMD_TIMEOUT, check=False)
        err = cp.stderr.decode("utf-8", "replace")
        with open(rss_file) as f:
            rss = int(f.read())
        print("%d bytes to %s: exit %d, %.1f s, peak %d MB"
              % (len(msg), rcpt, cp.returncode, time.monotonic() - start, rss // 1024),
              flush=True)
        data = None
        if os.path.exists(out):
            with open(out, "rb") as f:
                data = f.read()
        return cp.returncode, data, err, rss

    def assert_refused_outbound(self, msg):
        rc, out, err, rss = self.process(msg, CAROL)
        self.assertEqual(rc, 2, err)
        self.assertIn(REFUSAL, err)
        self.assertIsNone(out)
        self.assertLess(rss, MAX_RSS_KB)

    def assert_too_deep_inbound(self, msg):
        rc, out, err, rss = self.process(msg, BOB)
        self.assertEqual(rc, 0, err)
        self.assertIsNotNone(out)
        self.assertEqual(sgtest.field_values(out, "X-Sealgate-Decrypted"),
                         ["failed; reason=too-deep"])
        self.assertTrue(out == sgtest.with_fields_appended(msg, (
            ("X-Sealgate-Decrypted", "failed; reason=too-deep"),
            ("X-Sealgate-Signature", "none"))), "message changed")
        self.assertLess(rss, MAX_RSS_KB)

    def test_two_million_empty_parts(self):
        msg = flat(2000000)
        self.assertGreater(len(msg), 14000000)
        self.assert_refused_outbound(msg)
        self.assert_too_deep_inbound(msg)

    def test_deep_multipart_nesting(self):
        msg = nested(100000)
        self.assert_refused_outbound(msg)
        self.assert_too_deep_inbound(msg)

    def test_deep_embedded_messages(self):
        msg = embedded(40)
        self.assert_refused_outbound(msg)
        self.assert_too_deep_inbound(msg)

    def test_boundary_hidden_behind_a_long_content_type(self):
        # A Content-Type longer than what the scan keeps would hide the
        # boundary from the count while GMime still built every part.
        body = b"--b\r\n\r\n" * 200000 + b"--b--\r\n"
        for name, ctype in (
                ("one line", 'multipart/mixed; x-pad="%s"; boundary="b"' % ("A" * 20000)),
                ("folded", "multipart/mixed;" + "".join("\r\n\tx-p%d=\"%s\";" % (i, "A" * 50)
                                                       for i in range(300))
                 + ' boundary="b"')):
            with self.subTest(name):
                msg = make_message(std_headers() + [("Content-Type", ctype)], body)
                rc, out, err, rss = self.process(msg, CAROL)
                self.assertEqual(rc, 2, err)
                self.assertIn("554 5.6.0 malformed MIME message (Content-Type field longer "
                              "than 16384 bytes)", err)
                self.assertIsNone(out)
                self.assertLess(rss, MAX_RSS_KB)
                rc, out, err, rss = self.process(msg, BOB)
                self.assertEqual(rc, 0, err)
                self.assertEqual(sgtest.field_values(out, "X-Sealgate-Decrypted"),
                                 ["no; reason=malformed"])
                self.assertLess(rss, MAX_RSS_KB)

    def test_within_the_bounds(self):
        # 9,999 parts plus the multipart itself, and 32 levels (31 nested
        # multiparts around a leaf), are still encrypted.
        for msg in (flat(9999), nested(30)):
            rc, out, err, _rss = self.process(msg, CAROL)
            self.assertEqual(rc, 0, err)
            sgtest.assert_decrypts_to_original(self, self.carol, msg, out)
        rc, _out, err, _rss = self.process(flat(10000), CAROL)
        self.assertEqual(rc, 2, err)
        self.assertIn(REFUSAL, err)


if __name__ == "__main__":
    unittest.main()
