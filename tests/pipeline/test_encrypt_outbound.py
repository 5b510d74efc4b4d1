"""Outbound OpenPGP encryption through `sealgate process`, checked with real gpg.

Each message goes from an internal sender (alice@example.com) to external
recipients whose public keys are in the gateway's keystore. The result must be
RFC 3156 PGP/MIME; gpg in a separate GnuPG home holding the recipient's secret
key decrypts it, and the decrypted entity must be the original's Content-*
fields and body. Outer header fields must be unchanged.
"""

import base64
import os
import re
import subprocess
import threading
import time
import unittest

import sgtest
from sgtest import CAROL, DAVE, MARKER, SENDER, make_message, std_headers


def b64_lines(data):
    enc = base64.b64encode(data)
    return b"".join(enc[i:i + 76] + b"\r\n" for i in range(0, len(enc), 76))


class EncryptOutbound(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp, homes = sgtest.class_set_up("sgenc", CAROL, DAVE)
        (cls.carol, cls.carol_fpr), (cls.dave, cls.dave_fpr) = homes
        cls.carol_subkeys = cls.carol.encryption_keyids(CAROL)
        cls.dave_subkeys = cls.dave.encryption_keyids(DAVE)
        cls.gw = sgtest.Gateway(os.path.join(cls.tmp, "gw"))
        sgtest.import_public_keys(cls.gw, cls.tmp, [(cls.carol, CAROL), (cls.dave, DAVE)])

    # -- helpers ---------------------------------------------------------

    def encrypt_ok(self, msg, rcpts=(CAROL,)):
        """Process msg; assert accepted, PGP/MIME, outer headers kept, no
        content on stderr, spool empty. Returns the output bytes."""
        rc, out, err = self.gw.process(msg, SENDER, list(rcpts))
        self.assertEqual(rc, 0, "sealgate process exit %d: %s" % (rc, err))
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out, "no message written")
        self.assertNotIn(MARKER, err, "message content printed on stderr")
        self.assertNotIn(MARKER.encode(), out, "marker visible in clear in the result")
        sgtest.pgp_mime_parts(out)
        sgtest.assert_outer_headers_kept(self, msg, out)
        self.assertEqual(self.gw.spool_entries(), [], "spool dir not empty after run")
        return out

    def roundtrip(self, msg, rcpts=(CAROL,)):
        out = self.encrypt_ok(msg, rcpts)
        return sgtest.assert_decrypts_to_original(self, self.carol, msg, out)

    # -- message kinds ----------------------------------------------------

    def test_plain_ascii_text(self):
        msg = make_message(
            std_headers() + [("Content-Type", "text/plain; charset=us-ascii"),
                             ("Content-Transfer-Encoding", "7bit")],
            "Hello Carol,\r\n\r\nthe figures are attached. %s\r\n\r\n-- \r\nAlice\r\n" % MARKER)
        self.roundtrip(msg)

    def test_utf8_8bit_text(self):
        body = ("Grüße aus Köln — ½ € ✓ 日本語 %s\r\n"
                "Ligne accentuée : àéèùç\r\n" % MARKER)
        msg = make_message(
            std_headers(subject="=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=")
            + [("Content-Type", "text/plain; charset=UTF-8; format=flowed"),
               ("Content-Transfer-Encoding", "8bit")],
            body)
        plain = self.roundtrip(msg)
        self.assertIn(body.encode("utf-8"), plain)

    def test_multipart_alternative_text_html(self):
        body = ("This is a multi-part message in MIME format.\r\n"
                "--alt-b0undary\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 7bit\r\n"
                "\r\n"
                "Plain version %s\r\n"
                "--alt-b0undary\r\n"
                "Content-Type: text/html; charset=utf-8\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n"
                "\r\n"
                "<html><body><p style=3D\"color:red\">HTML version</p></body></html>\r\n"
                "--alt-b0undary--\r\n" % MARKER)
        msg = make_message(
            std_headers() + [("Content-Type",
                              'multipart/alternative;\r\n boundary="alt-b0undary"')],
            body)
        self.roundtrip(msg)

    def test_binary_attachment(self):
        blob = os.urandom(40000)
        body = (b"--mix\r\n"
                b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                b"See attachment. " + MARKER.encode() + b"\r\n"
                b"--mix\r\n"
                b"Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
                b"Content-Disposition: attachment; filename=\"data.bin\"\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n"
                + b64_lines(blob) +
                b"--mix--\r\n")
        msg = make_message(std_headers() + [("Content-Type", "multipart/mixed; boundary=mix")],
                           body)
        plain = self.roundtrip(msg)
        self.assertIn(b64_lines(blob), plain)
        decoded = base64.b64decode(b"".join(re.findall(
            rb"\r\n\r\n([A-Za-z0-9+/=\r\n]+)--mix--", plain)))
        self.assertEqual(decoded, blob)

    def test_nested_mixed_with_related(self):
        png = os.urandom(3000)
        body = (b"--outer\r\n"
                b"Content-Type: multipart/related; boundary=\"rel\"; type=\"text/html\"\r\n"
                b"\r\n"
                b"--rel\r\n"
                b"Content-Type: text/html; charset=utf-8\r\n\r\n"
                b"<html><body><img src=\"cid:logo@example.com\"> "
                + MARKER.encode() + b"</body></html>\r\n"
                b"--rel\r\n"
                b"Content-Type: image/png\r\n"
                b"Content-ID: <logo@example.com>\r\n"
                b"Content-Disposition: inline\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n"
                + b64_lines(png) +
                b"--rel--\r\n"
                b"\r\n"
                b"--outer\r\n"
                b"Content-Type: application/pdf; name=report.pdf\r\n"
                b"Content-Disposition: attachment; filename=report.pdf\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n"
                + b64_lines(b"%PDF-1.4\n" + os.urandom(2000)) +
                b"--outer--\r\n")
        msg = make_message(
            std_headers(extra=[("Cc", "Nobody <nobody@example.com>")])
            + [("Content-Type", "multipart/mixed;\r\n\tboundary=\"outer\""),
               ("Content-Language", "en-GB")],
            body)
        self.roundtrip(msg)

    def test_line_longer_than_998(self):
        long_line = ("x" * 700 + " " + MARKER + " " + "y" * 800)
        self.assertGreater(len(long_line), 998)
        msg = make_message(std_headers() + [("Content-Type", "text/plain; charset=us-ascii")],
                           "short\r\n" + long_line + "\r\nend\r\n")
        plain = self.roundtrip(msg)
        self.assertIn(b"\r\n" + long_line.encode() + b"\r\n", plain)

    def test_empty_body(self):
        msg = make_message(std_headers() + [("Content-Type", "text/plain; charset=us-ascii")],
                           b"")
        plain = self.roundtrip(msg)
        self.assertEqual(plain, b"Content-Type: text/plain; charset=us-ascii\r\n\r\n")

    def _alternative(self, eol):
        body = ("--b1\n"
                "Content-Type: text/plain; charset=utf-8\n\n"
                "line one %s\n"
                "line two\n"
                "--b1\n"
                "Content-Type: text/html; charset=utf-8\n\n"
                "<p>line one</p>\n"
                "--b1--\n" % MARKER).replace("\n", eol.decode())
        return make_message(std_headers() + [("Content-Type", "multipart/alternative; boundary=b1")],
                            body, eol=eol)

    def test_lf_line_endings(self):
        msg = self._alternative(b"\n")
        self.assertNotIn(b"\r", msg)
        self.roundtrip(msg)

    def test_crlf_line_endings(self):
        msg = self._alternative(b"\r\n")
        self.assertEqual(msg.count(b"\n"), msg.count(b"\r\n"))
        self.roundtrip(msg)

    def test_no_mime_headers_at_all(self):
        # An RFC 5322 message without MIME fields is text/plain; us-ascii.
        hdrs = [h for h in std_headers() if h[0] != "MIME-Version"]
        msg = make_message(hdrs, "Just text. %s\r\n" % MARKER)
        out = self.encrypt_ok(msg)
        _c, armored = sgtest.pgp_mime_parts(out)
        rc, plain, err = self.carol.decrypt(armored)
        self.assertTrue(sgtest.decryption_succeeded(rc, err), err)
        fields, body = sgtest.split_header_body(plain)
        self.assertEqual(body, b"Just text. " + MARKER.encode() + b"\r\n")
        # The entity may carry no Content-* field (as the original) or spell
        # out the default; nothing else is allowed.
        for name, value in fields:
            if name.lower() == "content-type":
                ctype, ct = sgtest.parse_content_type(value)
                self.assertEqual(ctype, "text/plain")
                self.assertIn((ct.get_param("charset") or "us-ascii").lower(), ("us-ascii",))
            elif name.lower() == "content-transfer-encoding":
                self.assertEqual(value.strip().lower(), "7bit")
            else:
                self.fail("unexpected field in the encrypted entity: %s" % name)

    # -- large message: spool -------------------------------------------

    def test_large_attachment_spooled_privately(self):
        blob = os.urandom(5 * 1024 * 1024)
        head = make_message(
            std_headers() + [("Content-Type", "multipart/mixed; boundary=big")],
            b"--big\r\nContent-Type: text/plain\r\n\r\n" + MARKER.encode() + b"\r\n"
            b"--big\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n")
        msg = head + b64_lines(blob) + b"--big--\r\n"
        tail = b"--big--\r\n"
        self.assertGreater(len(msg), 5 * 1024 * 1024)

        # Feed the message through a FIFO and keep the last line back, so the
        # body is known to be above 1 MiB while sealgate is still running:
        # then its spool file must be open, unlinked and 0600.
        gw = self.gw
        fifo = os.path.join(gw.dir, "big.fifo")
        outp = os.path.join(gw.dir, "big.out")
        errp = os.path.join(gw.dir, "big.err")
        os.mkfifo(fifo, 0o600)
        with open(errp, "wb") as errf:
            proc = subprocess.Popen(
                [gw.bin, "process", "-c", gw.policy, "--from", SENDER, "--to", CAROL,
                 "--client-ip", "127.0.0.1", "-i", fifo, "-o", outp],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
        try:
            fd = None
            deadline = time.time() + 20
            while fd is None:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    if proc.poll() is not None or time.time() > deadline:
                        self.fail("sealgate did not open its input FIFO")
                    time.sleep(0.01)
            os.set_blocking(fd, True)
            first = msg[:-len(tail)]
            writer = threading.Thread(target=_write_all, args=(fd, first), daemon=True)
            writer.start()
            seen = {}
            deadline = time.time() + 30
            while writer.is_alive() and proc.poll() is None and time.time() < deadline:
                seen.update(_spool_fds(proc.pid, gw.spool))
                time.sleep(0.005)
            # All but the last line is written: a body this large is in the
            # spool by now (give a slow, sanitizer build a few seconds).
            deadline = time.time() + 5
            while not seen and proc.poll() is None and time.time() < deadline:
                seen.update(_spool_fds(proc.pid, gw.spool))
                time.sleep(0.005)
            writer.join(30)
            self.assertFalse(writer.is_alive(), "sealgate stopped reading its input")
            _write_all(fd, tail)
            os.close(fd)
            fd = None
            while proc.poll() is None:
                seen.update(_spool_fds(proc.pid, gw.spool))
                time.sleep(0.005)
        finally:
            if fd is not None:
                os.close(fd)
            if proc.poll() is None:
                proc.kill()
            proc.wait(60)
        with open(errp, encoding="utf-8", errors="replace") as f:
            err = f.read()
        self.assertEqual(proc.returncode, 0, err)
        self.assertNotIn(MARKER, err)
        self.assertTrue(seen, "no temp file in the spool dir while a 5 MiB body was read")
        for target, mode in seen.items():
            self.assertTrue(target.endswith(" (deleted)"),
                            "spool file is not unlinked: %s" % target)
            self.assertEqual(mode & 0o777, 0o600, "spool file %s has mode %o" % (target, mode))
        self.assertEqual(gw.spool_entries(), [], "spool dir not empty after run")
        with open(outp, "rb") as f:
            out = f.read()
        os.unlink(outp)
        sgtest.assert_outer_headers_kept(self, msg, out)
        sgtest.assert_decrypts_to_original(self, self.carol, msg, out)

    # -- recipients and key ids ----------------------------------------

    def test_two_recipients_each_can_decrypt(self):
        msg = make_message(
            std_headers(to="Carol <%s>" % CAROL, extra=[("Cc", "Dave <%s>" % DAVE)])
            + [("Content-Type", "text/plain")],
            "For both of you. %s\r\n" % MARKER)
        out = self.encrypt_ok(msg, (CAROL, DAVE))
        _c, armored = sgtest.pgp_mime_parts(out)
        self.assertEqual(armored.count(b"-----BEGIN PGP MESSAGE-----"), 1,
                         "expected one encryption to all recipients")
        for home in (self.carol, self.dave):
            sgtest.assert_decrypts_to_original(self, home, msg, out)
        ids = sgtest.pkesk_keyids(self.carol.list_packets(armored))
        self.assertEqual(sorted(ids), sorted(self.carol_subkeys + self.dave_subkeys),
                         "recipients in To/Cc: their key ids must be visible")

    def test_single_recipient_in_to_shows_key_id(self):
        msg = make_message(std_headers() + [("Content-Type", "text/plain")],
                           "Visible key id. %s\r\n" % MARKER)
        out = self.encrypt_ok(msg, (CAROL,))
        _c, armored = sgtest.pgp_mime_parts(out)
        self.assertEqual(sgtest.pkesk_keyids(self.dave.list_packets(armored)),
                         self.carol_subkeys)

    def test_bcc_recipient_hides_all_key_ids(self):
        msg = make_message(
            std_headers(to="Carol <%s>" % CAROL) + [("Content-Type", "text/plain")],
            "Dave is a blind copy. %s\r\n" % MARKER)
        self.assertNotIn(DAVE.encode(), msg)
        out = self.encrypt_ok(msg, (CAROL, DAVE))
        _c, armored = sgtest.pgp_mime_parts(out)
        ids = sgtest.pkesk_keyids(self.dave.list_packets(armored))
        self.assertEqual(ids, ["0000000000000000"] * 2,
                         "a Bcc recipient must make every key id hidden")
        for home in (self.carol, self.dave):
            sgtest.assert_decrypts_to_original(self, home, msg, out)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _spool_fds(pid, spool):
    """{link target: mode} of pid's open files inside the spool directory."""
    found = {}
    fddir = "/proc/%d/fd" % pid
    try:
        names = os.listdir(fddir)
    except OSError:
        return found
    prefix = os.path.realpath(spool) + "/"
    for name in names:
        path = os.path.join(fddir, name)
        try:
            target = os.readlink(path)
            if target.startswith(prefix):
                found[target] = os.stat(path).st_mode
        except OSError:
            continue
    return found


if __name__ == "__main__":
    unittest.main()
