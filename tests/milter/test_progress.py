"""The milter reports progress to the MTA while it works on a large
message (smfi_progress: the MTA restarts its content timeout), so a slow
encryption or decryption is not cut off by the MTA's timeout.

Watched at the protocol level (tests/lib/milterclient.py speaks the
MTA's side), since an MTA does not log progress reports: a message of
SIZE bytes encrypted to carol's OpenPGP key must bring at least one report
per MiB read (sealgate reports every 1 MiB read or written, or every
second), before the body is replaced and the message accepted; so must
an inbound message of SIZE bytes of plaintext, encrypted by carol to
alice (whose secret key the keystore holds), per MiB decrypted. Without
reports during the work, only the one sent when the work starts arrives.
"""
import os
import subprocess
import time
import unittest

import inboundtest
import milterclient
import sgtest

SIZE = 8 * 1024 * 1024


def wait_for_socket(path, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


class Progress(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        sgtest.require_binary()
        sgtest.require_program("gpg")
        cls.tmp = sgtest.tmpdir("sgprog")
        cls.sock = os.path.join(cls.tmp, "milter.sock")
        cls.carol, _fpr = sgtest.new_key_home(cls.tmp, sgtest.CAROL)
        cls.gw = sgtest.Gateway(os.path.join(cls.tmp, "gw"),
                                socket="unix:" + cls.sock)
        key = sgtest.export_public_key(cls.tmp, cls.carol, sgtest.CAROL)
        cls.gw.import_keys_checked(key)
        # alice, internal: her secret key in the keystore, her public key
        # in carol's home.
        cls.alice = sgtest.GpgHome(os.path.join(cls.tmp, "alice"))
        cls.alice.gen_key("Alice Example", sgtest.SENDER)
        secret = os.path.join(cls.tmp, "alice.sec.asc")
        with open(secret, "wb") as f:
            f.write(cls.alice.export_secret(sgtest.SENDER))
        cls.gw.import_keys_checked(secret)
        cls.carol.import_keys(cls.alice.export_public(sgtest.SENDER))
        cls.log = open(os.path.join(cls.tmp, "milter.log"), "wb")
        cls.proc = subprocess.Popen(
            [cls.gw.bin, "milter", "-c", cls.gw.policy, "-f"] + sgtest.milter_user_args(),
            stdout=cls.log, stderr=cls.log, stdin=subprocess.DEVNULL)
        if not wait_for_socket(cls.sock, cls.proc):
            cls.tearDownClass()
            raise RuntimeError("the milter did not start")

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.terminate()
            try:
                cls.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
        cls.log.close()
        sgtest.kill_agents_under(cls.tmp)

    def message(self, size):
        line = (sgtest.MARKER + " quarterly figures, confidential\r\n").encode()
        return sgtest.make_message(sgtest.std_headers(),
                                   line * (size // len(line) + 1))

    def assert_reports(self, codes, size):
        reports = codes.count(b"p")
        self.assertGreaterEqual(reports, size // (1024 * 1024),
                                "%d progress reports for %d bytes" % (reports, size))
        # Reports come while working, before the new body.
        self.assertLess(len(codes) - codes[::-1].index(b"p") - 1, codes.index(b"b"))

    def test_large_decryption_reports_progress(self):
        line = (sgtest.MARKER + " quarterly figures, confidential\r\n").encode()
        entity = (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                  + line * (SIZE // len(line) + 1))
        armored = self.carol.encrypt(entity, [sgtest.SENDER])
        msg = inboundtest.pgp_mime_message(armored)
        answer, mods = milterclient.send_message(
            self.sock, sgtest.CAROL, [sgtest.SENDER], msg)
        codes = [code for code, _data in mods]
        self.assertEqual(answer, "accept", codes[:5])
        self.assertIn(b"b", codes, "the body was not replaced")
        self.assert_reports(codes, SIZE)
        # The work reported on was done: the body is the plaintext.
        body = b"".join(data for code, data in mods if code == b"b")
        self.assertEqual(sgtest.canon(body), sgtest.split_header_body(entity)[1])

    def test_large_encryption_reports_progress(self):
        msg = self.message(SIZE)
        answer, mods = milterclient.send_message(
            self.sock, sgtest.SENDER, [sgtest.CAROL], msg)
        codes = [code for code, _data in mods]
        self.assertEqual(answer, "accept", codes[:5])
        self.assertIn(b"b", codes, "the body was not replaced")
        self.assert_reports(codes, SIZE)
        # The work reported on was done: carol reads the whole body.
        body = b"".join(data for code, data in mods if code == b"b")
        self.assertNotIn(sgtest.MARKER.encode(), body)
        start = body.index(b"-----BEGIN PGP MESSAGE-----")
        end = body.index(b"-----END PGP MESSAGE-----") + 25
        rc, plain, err = self.carol.decrypt(body[start:end])
        self.assertTrue(sgtest.decryption_succeeded(rc, err), err[-2000:])
        self.assertEqual(sgtest.split_header_body(sgtest.canon(plain))[1],
                         sgtest.split_header_body(msg)[1])


if __name__ == "__main__":
    unittest.main()
