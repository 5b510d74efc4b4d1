"""Large inbound mail and the plaintext spool (DESIGN.md §2 "Streaming, not
copying", §4 rule 3).

  - A 50 MiB message -- PGP/MIME and S/MIME AES-GCM encrypted, OpenPGP
    multipart/signed, S/MIME opaque signed-data -- is decrypted, verified or
    unwrapped end to end (the delivered entity is the one that was encrypted
    or signed, byte for byte), while the peak memory of `sealgate process`
    stays far below the message's size: under 100 MiB here, where holding
    and parsing the message several times took 110 to 180 MiB. The
    messages are made by gpg and `openssl cms`.
  - The plaintext lives only in a file without a name: while a large
    message is decrypted, sealgate has a file open in the spool directory
    that holds the plaintext, has no link (nlink 0) and mode 0600, and the
    directory shows no entry at any time.
  - A spool directory that takes no file (a read-only mount) or runs full
    in the middle of the plaintext (a 256 KiB file system) defers the
    message (`451 4.3.0`, exit 3, no message written), for OpenPGP and
    S/MIME; the plaintext is nowhere, stderr included. Mail that needs no
    plaintext file still passes the read-only spool.

The spool directory tests mount file systems in a private mount namespace
(`unshare --mount`), which needs root; without root a directory of mode
0500 stands for the read-only one, and the full file system is skipped.
"""

import base64
import os
import stat
import subprocess
import time
import unittest

import inboundtest
import sgtest
import smimetest
import verifytest as vt
from inboundtest import ALICE, CAROL, InboundCase, cms_encrypt, gpg_encrypt, \
    inbound_policy, new_marker, outer_headers, pgp_mime_message, process, \
    process_peak_rss, smime_message, status_fields

MIB = 1024 * 1024
SIZE = 50 * MIB
RSS_BOUND = 100 * MIB
OPENPGP_YES = "yes; method=openpgp; integrity=mdc"
SMIME_GCM_YES = "yes; method=smime; integrity=aead"
TEMPFAIL = "451 4.3.0 "


def setUpModule():
    global IDS, GW, TMP, CAROL_FPR, CAROL_SMIME
    smimetest.require_tools()
    sgtest.require_program("gpg")
    TMP = sgtest.tmpdir("sglg")
    IDS = inboundtest.Identities(TMP)
    policy = inbound_policy(max_decrypted_size="200M").replace(
        '  spool_dir: "spool"\n', '  spool_dir: "spool"\n  max_message_size: 100M\n')
    GW = IDS.gateway(os.path.join(TMP, "gw"), policy)
    CAROL_FPR = IDS.sender.fingerprint(CAROL)
    sgtest.import_public_keys(GW, TMP, [(IDS.sender, CAROL)])
    CAROL_SMIME = IDS.ca.issue("Carol Partner", [CAROL], basename="carol-rsa")


def tearDownModule():
    IDS.kill_agents()


def large_entity(marker, size):
    """multipart/mixed of about size bytes (CRLF): a text part that starts
    with the marker, then a base64 attachment of random bytes."""
    b64 = base64.encodebytes(os.urandom(size * 57 // 78)).replace(b"\n", b"\r\n")
    return (b"Content-Type: multipart/mixed; boundary=\"big-7Qx\"\r\n\r\n"
            b"--big-7Qx\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
            + marker.encode() + b" Gr\xc3\xbc\xc3\x9fe, the figures are attached.\r\n"
            b"--big-7Qx\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n"
            + b64 + b"--big-7Qx--\r\n")


def armored_for(entity):
    """entity encrypted by gpg to alice, uncompressed (random data does not
    compress): the message has about the size of the armor."""
    return gpg_encrypt(IDS, entity, [ALICE], extra=["--compress-algo", "none"])


class Large(unittest.TestCase, InboundCase):
    """50 MiB messages, each checked for what was delivered and for the
    peak memory that took."""

    def run_large(self, msg):
        self.assertGreater(len(msg), SIZE * 95 // 100, "the test message is too small")
        rc, out, err, rss_kib = process_peak_rss(GW, msg, [ALICE])
        self.assertEqual(rc, 0, err)
        self.assertLess(rss_kib * 1024, RSS_BOUND,
                        "peak RSS %.1f MiB for a %.1f MiB message"
                        % (rss_kib / 1024, len(msg) / MIB))
        self.assertEqual(GW.spool_entries(), [], "files left in the spool directory")
        return out, err

    def test_openpgp(self):
        marker = new_marker()
        entity = large_entity(marker, SIZE * 73 // 100)
        msg = pgp_mime_message(armored_for(entity))
        out, err = self.run_large(msg)
        self.check_decrypted(out, msg, entity, OPENPGP_YES)
        self.assertNotIn(marker, err)

    def test_smime_aes_gcm(self):
        marker = new_marker()
        entity = large_entity(marker, SIZE * 73 // 100)
        msg = smime_message(cms_encrypt(entity, [IDS.smime[ALICE].cert], "aes-256-gcm"))
        out, err = self.run_large(msg)
        self.check_decrypted(out, msg, entity, SMIME_GCM_YES)
        self.assertNotIn(marker, err)

    def test_openpgp_signed(self):
        entity = large_entity(new_marker(), SIZE)
        msg = vt.pgp_signed_message(IDS.sender, entity, vt.outer())
        out, err = self.run_large(msg)
        dec, sig, _last = status_fields(out)
        self.assertEqual(sig, ["valid; method=openpgp; signer=%s; key=%s"
                               % (CAROL, CAROL_FPR)], err)
        self.check_passthrough(out, msg, "no; reason=not-encrypted", sig[0])

    def test_smime_opaque_signed_unwrapped(self):
        entity = large_entity(new_marker(), SIZE * 73 // 100)
        scratch = vt.Scratch(os.path.join(TMP, "scratch"))
        msg = vt.smime_signed_message(scratch, CAROL_SMIME, entity,
                                      vt.outer(mime_version=False), opaque=True)
        out, err = self.run_large(msg)
        dec, sig, _last = status_fields(out)
        self.assertEqual(dec, ["no; reason=not-encrypted"], err)
        self.assertTrue(sig[0].startswith("valid; method=smime; signer=%s;" % CAROL), sig)
        inboundtest.assert_entity_in_place(self, msg, out, entity, "signed")


# --------------------------------------------------------------------------


def fds_in(pid, directory):
    """[(fd path, target)] of the files pid has open in directory."""
    base = "/proc/%d/fd" % pid
    found = []
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return found
    for name in names:
        path = os.path.join(base, name)
        try:
            target = os.readlink(path)
        except OSError:
            continue
        if target.startswith(directory + "/"):
            found.append((path, target))
    return found


class PlaintextFile(unittest.TestCase, InboundCase):

    def test_plaintext_file_has_no_name(self):
        marker = new_marker()
        entity = large_entity(marker, 30 * MIB)
        msg = pgp_mime_message(armored_for(entity))
        spool = os.path.realpath(GW.spool)
        seen, entries = [], set()
        run = GW.start_process(msg, CAROL, [ALICE], client_ip=sgtest.OUTSIDE_IP)
        pid = run.proc.pid
        # Until sealgate exits: what the directory shows, and the files it
        # has open there.
        while run.proc.poll() is None:
            entries.update(os.listdir(spool))
            for path, target in fds_in(pid, spool):
                try:
                    st = os.stat(path)
                    with open(path, "rb") as f:
                        head = f.read(65536)
                except OSError:
                    continue          # closed meanwhile
                if marker.encode() in head:
                    seen.append((target, st.st_nlink, stat.S_IMODE(st.st_mode)))
            time.sleep(0.005)
        rc, out, err = run.result()
        self.assertEqual(rc, 0, err)
        self.check_decrypted(out, msg, entity, OPENPGP_YES)
        self.assertEqual(entries, set(), "names in the spool directory during processing")
        self.assertTrue(seen, "no plaintext file was seen open in the spool directory")
        for target, nlink, mode in seen:
            self.assertEqual(nlink, 0, "plaintext file %s has a name" % target)
            self.assertEqual(mode, 0o600, "plaintext file %s mode %o" % (target, mode))
        self.assertEqual(GW.spool_entries(), [])


# --------------------------------------------------------------------------


def wrapped(mount_script, spool, argv):
    """argv run where spool is what mount_script ("$1" is spool) made of
    it, in a private mount namespace."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            mount_script + ' && shift && exec "$@"', "sh", spool] + argv


READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"'
FULL = 'mount -t tmpfs -o size=256k,mode=0700 tmpfs "$1"'


class SpoolFails(unittest.TestCase, InboundCase):
    """The plaintext cannot be spooled: the mail stays with the MTA."""

    @classmethod
    def setUpClass(cls):
        cls.root = os.geteuid() == 0
        if cls.root:
            cp = subprocess.run(wrapped(READ_ONLY, GW.spool, ["true"]),
                                capture_output=True, check=False)
            if cp.returncode != 0:
                raise RuntimeError("cannot make a read-only mount (%d): %s"
                                   % (cp.returncode, cp.stderr.decode("utf-8", "replace")))

    def run_wrapped(self, script, msg):
        """sealgate process on msg (to alice) with the spool directory made
        read-only or small: (returncode, output or None, stderr)."""
        inp = os.path.join(GW.dir, "spool-in.eml")
        outp = os.path.join(GW.dir, "spool-out.eml")
        with open(inp, "wb") as f:
            f.write(msg)
        argv = [GW.bin, "process", "-c", GW.policy, "--from", CAROL, "--to", ALICE,
                "--client-ip", sgtest.OUTSIDE_IP, "-i", inp, "-o", outp]
        mode = os.stat(GW.spool).st_mode
        try:
            if self.root:
                cp = sgtest.run(wrapped(script, GW.spool, argv))
            else:
                if script != READ_ONLY:
                    self.skipTest("a full file system needs root (a private mount)")
                os.chmod(GW.spool, 0o500)
                cp = sgtest.run(argv)
            out = None
            if os.path.exists(outp):
                with open(outp, "rb") as f:
                    out = f.read() or None
        finally:
            os.chmod(GW.spool, stat.S_IMODE(mode))
            for path in (inp, outp):
                if os.path.exists(path):
                    os.unlink(path)
        return cp.returncode, out, cp.stdout.decode() + cp.stderr.decode("utf-8", "replace")

    def assert_deferred(self, script, msg, marker):
        rc, out, err = self.run_wrapped(script, msg)
        self.assertEqual(rc, 3, err)
        self.assertEqual(sgtest.verdict(err), "tempfail", err)
        self.assertIn(TEMPFAIL, err)
        self.assertIsNone(out, "a message was written")
        self.assert_no_marker(marker, out, err, GW)

    def small_openpgp(self, marker):
        return pgp_mime_message(gpg_encrypt(IDS, inboundtest.text_entity(marker), [ALICE]))

    def small_smime(self, marker):
        return smime_message(cms_encrypt(inboundtest.text_entity(marker),
                                         [IDS.smime[ALICE].cert]))

    def test_read_only_spool_defers_openpgp(self):
        marker = new_marker()
        self.assert_deferred(READ_ONLY, self.small_openpgp(marker), marker)

    def test_read_only_spool_defers_smime(self):
        marker = new_marker()
        self.assert_deferred(READ_ONLY, self.small_smime(marker), marker)

    def test_full_spool_defers_openpgp(self):
        # Under 1 MiB of ciphertext (held in memory) that decompresses to
        # 2 MiB of plaintext: the spool runs full in the middle of it.
        marker = new_marker()
        entity = inboundtest.text_entity(marker, extra_text="figures, " * 250000)
        msg = pgp_mime_message(gpg_encrypt(IDS, entity, [ALICE]))
        self.assertLess(len(msg), 256 * 1024)
        self.assert_deferred(FULL, msg, marker)

    def test_full_spool_defers_smime(self):
        marker = new_marker()
        entity = inboundtest.text_entity(marker, extra_text="figures, " * 60000)
        msg = self.small_smime_of(entity)
        self.assertLess(len(msg), 1024 * 1024)
        self.assert_deferred(FULL, msg, marker)

    def small_smime_of(self, entity):
        return smime_message(cms_encrypt(entity, [IDS.smime[ALICE].cert]))

    def test_read_only_spool_passes_mail_without_plaintext(self):
        msg = sgtest.make_message(outer_headers() + [("Content-Type", "text/plain")],
                                  "no secrets here\r\n")
        rc, out, err = self.run_wrapped(READ_ONLY, msg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(status_fields(out)[0], ["no; reason=not-encrypted"])


if __name__ == "__main__":
    unittest.main()
