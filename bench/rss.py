"""Peak memory (maximum resident set size) of `sealgate process` on large
messages, as `/usr/bin/time -v` reports it ("Maximum resident set size"),
for each way a large message goes through the gateway:

  outbound          to a partner's OpenPGP key: encrypted
  inbound-openpgp   PGP/MIME encrypted to an internal user: decrypted
  inbound-smime     S/MIME AES-256-GCM to an internal user: decrypted
  inbound-signed    OpenPGP multipart/signed to an internal user: verified
  inbound-smime-signed  S/MIME multipart/signed: verified

The messages (the size given, 50 MiB by default) hold a base64
attachment of random bytes; they are made with gpg and openssl from the
example identities in keys-example/ (alice is the internal user, carol the
partner). Each run is checked: the verdict is accept, and the result says
what was done (encrypted, "X-Sealgate-Decrypted: yes", "X-Sealgate-Signature:
valid"); a run that does not do its job counts as a failure, whatever its
memory. The gateway's own spool and keystore are in a temporary directory.

Prints one line per case with the peak RSS and the target (outbound 32 MiB,
inbound 64 MiB); with --json one JSON object. Exits 1 when a case fails,
and with --check also when a case is over its target.

Usage: bench/rss.py SEALGATE_BIN [--size MiB] [--case NAME]... [--json] [--check]
"""
import argparse
import base64
import email.utils
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = os.path.join(ROOT, "keys-example")
ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@partner.example"
MIB = 1024 * 1024
TARGETS = {"outbound": 32, "inbound-openpgp": 64, "inbound-smime": 64,
           "inbound-signed": 64, "inbound-smime-signed": 64}
EXPECT = {"outbound": ("action", "encrypt"),
          "inbound-openpgp": ("X-Sealgate-Decrypted", "yes; method=openpgp"),
          "inbound-smime": ("X-Sealgate-Decrypted", "yes; method=smime"),
          "inbound-signed": ("X-Sealgate-Signature", "valid; method=openpgp"),
          "inbound-smime-signed": ("X-Sealgate-Signature", "valid; method=smime")}


def run(argv, input_bytes=None, **kw):
    cp = subprocess.run(argv, input=input_bytes, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, check=False, **kw)
    if cp.returncode != 0:
        sys.exit("%s failed (%d): %s" % (" ".join(argv[:3]), cp.returncode,
                                         cp.stderr.decode(errors="replace")))
    return cp.stdout


def crlf(data):
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def headers(sender, to, subject):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
            "Date: %s\r\nMessage-ID: <rss-%s@bench.example>\r\n"
            "MIME-Version: 1.0\r\n"
            % (sender, to, subject, email.utils.formatdate(usegmt=True),
               os.urandom(6).hex())).encode()


def entity(size):
    """multipart/mixed: a short text and a base64 attachment of about size
    bytes (CRLF)."""
    raw = os.urandom(size * 57 // 78)     # base64 in lines of 76 + CRLF
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return (b"Content-Type: multipart/mixed; boundary=\"mix-rss\"\r\n\r\n"
            b"--mix-rss\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            b"The figures are attached.\r\n"
            b"--mix-rss\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n"
            + b64 + b"--mix-rss--\r\n")


class Bench:

    def __init__(self, binary, tmp, size):
        self.bin = binary
        self.tmp = tmp
        self.size = size
        self.policy = os.path.join(tmp, "policy.yaml")
        os.mkdir(os.path.join(tmp, "spool"), 0o700)
        with open(self.policy, "w") as f:
            f.write("version: 1\n"
                    "gateway: { keystore: store, spool_dir: spool, "
                    "max_message_size: %dM }\n"
                    "internal_domains: [example.com]\n"
                    "outbound:\n  default: { action: encrypt-if-key, methods: [openpgp] }\n"
                    "inbound: { decrypt: true, verify: true, max_decrypted_size: %dM }\n"
                    % (size // MIB * 2 + 8, size // MIB * 2 + 8))
        smime = os.path.join(KEYS, "smime")
        pgp = os.path.join(KEYS, "openpgp")
        self.sealgate("keys", "-c", self.policy, "import",
                      os.path.join(pgp, "alice.sec.asc"), os.path.join(pgp, "carol.pub.asc"))
        self.sealgate("keys", "-c", self.policy, "import", "--trust-anchor",
                      os.path.join(smime, "ca.pem"))
        self.sealgate("keys", "-c", self.policy, "import", os.path.join(smime, "alice.p12"))
        self.home = os.path.join(tmp, "gpg")
        os.mkdir(self.home, 0o700)
        with open(os.path.join(self.home, "gpg.conf"), "w") as f:
            f.write("no-auto-key-retrieve\ndisable-dirmngr\ntrust-model always\n")
        self.gpg("--import", os.path.join(pgp, "alice.pub.asc"),
                 os.path.join(pgp, "carol.sec.asc"))

    def sealgate(self, *args):
        return run([self.bin] + list(args))

    def gpg(self, *args, input_bytes=None):
        return run(["gpg", "--homedir", self.home, "--batch", "--no-tty",
                    "--pinentry-mode", "loopback", "--passphrase", ""] + list(args),
                   input_bytes=input_bytes)

    def close(self):
        for home in (self.home, os.path.join(self.tmp, "store", "openpgp")):
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False)

    # Messages ------------------------------------------------------------

    def outbound(self):
        return headers(ALICE, CAROL, "outbound") + entity(self.size), ALICE, CAROL

    def inbound_openpgp(self):
        # Armor makes the ciphertext about 1.37 times larger; no compression
        # (the attachment is random), so the message has about the size asked.
        inner = entity(self.size * 73 // 100)
        armored = self.gpg("--armor", "--compress-algo", "none", "--encrypt",
                           "-r", ALICE, input_bytes=inner)
        body = (b"--enc-rss\r\nContent-Type: application/pgp-encrypted\r\n\r\n"
                b"Version: 1\r\n\r\n--enc-rss\r\n"
                b"Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n"
                + crlf(armored) + b"\r\n--enc-rss--\r\n")
        return (headers(CAROL, ALICE, "inbound openpgp")
                + b"Content-Type: multipart/encrypted; "
                  b"protocol=\"application/pgp-encrypted\"; boundary=\"enc-rss\"\r\n\r\n"
                + body), CAROL, ALICE

    def inbound_smime(self):
        inner = entity(self.size * 73 // 100)   # base64 of the DER: 1.37 times
        der = run(["openssl", "cms", "-encrypt", "-binary", "-outform", "DER",
                   "-aes-256-gcm", os.path.join(KEYS, "smime", "alice.pem")],
                  input_bytes=inner)
        return (headers(CAROL, ALICE, "inbound smime")
                + b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data; "
                  b"name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\n"
                  b"Content-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n"
                + base64.encodebytes(der).replace(b"\n", b"\r\n")), CAROL, ALICE

    def signed(self, inner, sig_type, sig_part, signer):
        return (headers(signer, ALICE, "inbound signed")
                + b"Content-Type: multipart/signed; protocol=\"" + sig_type
                + b"\"; micalg=sha-256; boundary=\"sig-rss\"\r\n\r\n"
                b"--sig-rss\r\n" + inner + b"\r\n--sig-rss\r\n" + sig_part
                + b"\r\n--sig-rss--\r\n")

    def inbound_signed(self):
        inner = entity(self.size)
        sig = self.gpg("--armor", "--detach-sign", "--digest-algo", "SHA256",
                       "-u", CAROL, input_bytes=inner)
        part = (b"Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n\r\n"
                + crlf(sig))
        return self.signed(inner, b"application/pgp-signature", part, CAROL), CAROL, ALICE

    def inbound_smime_signed(self):
        inner = entity(self.size)
        smime = os.path.join(KEYS, "smime")
        der = run(["openssl", "cms", "-sign", "-binary", "-outform", "DER",
                   "-signer", os.path.join(smime, "bob.pem"),
                   "-inkey", os.path.join(smime, "bob.key")], input_bytes=inner)
        part = (b"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n"
                + base64.encodebytes(der).replace(b"\n", b"\r\n"))
        return self.signed(inner, b"application/pkcs7-signature", part, BOB), BOB, ALICE

    # Measuring -------------------------------------------------------------

    def measure(self, name):
        msg, sender, rcpt = getattr(self, name.replace("-", "_"))()
        path = os.path.join(self.tmp, name + ".eml")
        out = os.path.join(self.tmp, name + ".out")
        timing = os.path.join(self.tmp, name + ".time")
        with open(path, "wb") as f:
            f.write(msg)
        del msg
        argv = [self.bin, "process", "-c", self.policy, "--from", sender, "--to", rcpt,
                "-i", path, "-o", out]
        if sender != ALICE:
            argv += ["--client-ip", "192.0.2.1"]
        cp = subprocess.run(["/usr/bin/time", "-v", "-o", timing] + argv,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        with open(timing) as f:
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)",
                                f.read()).group(1))
        err = cp.stderr.decode(errors="replace")
        field, want = EXPECT[name]
        if field == "action":
            done = re.search(r"^action: %s\b" % want, err, re.M) is not None
        else:
            with open(out, "rb") as f:
                head = f.read(1 << 20).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
            done = re.search(("^%s: %s" % (field, re.escape(want))).encode(), head,
                             re.M) is not None
        size = os.path.getsize(path)
        for p in (path, out, timing):
            os.unlink(p)
        return {"case": name, "message_bytes": size, "max_rss_kib": rss,
                "target_mib": TARGETS[name], "exit": cp.returncode,
                "ok": cp.returncode == 0 and done,
                "verdict": (re.findall(r"^(?:verdict|action|reason): .*$", err, re.M))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sealgate")
    ap.add_argument("--size", type=int, default=50, help="message size in MiB")
    ap.add_argument("--case", action="append", choices=sorted(TARGETS))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 also when a case is over its target")
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("/usr/bin/time is needed (Debian package time)")
    tmp = tempfile.mkdtemp(prefix="sgrss.", dir="/tmp")
    bench = None
    results = []
    try:
        bench = Bench(os.path.abspath(args.sealgate), tmp, args.size * MIB)
        for name in args.case or list(TARGETS):
            results.append(bench.measure(name))
            r = results[-1]
            if not args.json:
                print("%-22s %6.1f MiB message  max RSS %6.1f MiB  target %3d MiB  %s"
                      % (name, r["message_bytes"] / MIB, r["max_rss_kib"] / 1024,
                         r["target_mib"], "ok" if r["ok"] else
                         "FAILED (exit %d; %s)" % (r["exit"], "; ".join(r["verdict"]))),
                      flush=True)
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({"results": results}, indent=2))
    failed = [r for r in results if not r["ok"]]
    over = [r for r in results if r["max_rss_kib"] > r["target_mib"] * 1024]
    return 1 if failed or (args.check and over) else 0


if __name__ == "__main__":
    sys.exit(main())
