"""Helpers for the inbound signature-verification tests (signed mail from
outside to internal recipients). Standard library only; run with Debian's
/usr/bin/python3. Builds on sgtest (GnuPG homes, the gateway, MIME
helpers), smimetest (the test CA, openssl) and inboundtest (identities,
inbound policies, encrypted messages).

Every signature in these tests is made by the real tools: `gpg
--detach-sign` / `gpg --sign --encrypt` in the signer's GnuPG home, and
`openssl cms -sign` (detached multipart/signed, or opaque signed-data with
-nodetach). The test code only adds what a mail program adds around them:
the outer header fields, and for PGP/MIME the RFC 3156 multipart/signed
frame around gpg's detached signature. Adversarial inputs are real signed
messages with bytes changed afterwards.

The status fields sealgate writes (DESIGN.md, "Headers sealgate writes on
inbound mail") are parsed strictly with parse_status(): a status word, then
"; name=value" parameters, each name at most once.
"""

import base64
import os
import re

import inboundtest
import sgtest
import smimetest
from sgtest import canon, header_values, split_header_body

DECRYPTED = inboundtest.DECRYPTED
SIGNATURE = inboundtest.SIGNATURE
STATUS_WORDS = ("valid", "invalid", "expired", "revoked", "unknown-key",
                "signer-mismatch", "none")
NOT_ENCRYPTED = "no; reason=not-encrypted"
MAX_STATUS_LEN = 300


# --------------------------------------------------------------------------
# Scratch files


class Scratch:
    """Numbered files in a directory (kept with SGTEST_KEEP=1)."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.n = 0

    def file(self, suffix, data=b""):
        self.n += 1
        path = os.path.join(self.path, "%03d.%s" % (self.n, suffix))
        with open(path, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        return path


# --------------------------------------------------------------------------
# Entities and outer header fields


def text_entity(text, charset="utf-8", cte="8bit"):
    """A text/plain entity (CRLF line ends)."""
    return ("Content-Type: text/plain; charset=%s\r\n"
            "Content-Transfer-Encoding: %s\r\n\r\n" % (charset, cte)).encode() + \
        canon(text.encode("utf-8"))


def mixed_entity(text, attachment_name="report.csv", attachment=b"a,b\r\n1,2\r\n"):
    """A multipart/mixed entity: a text part and a base64 attachment."""
    b = "mix-" + os.urandom(5).hex()
    return ("Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
            "--%s\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
            "%s\r\n"
            "--%s\r\n"
            "Content-Type: text/csv; name=\"%s\"\r\n"
            "Content-Disposition: attachment; filename=\"%s\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
            "%s"
            "--%s--\r\n"
            % (b, b, text, b, attachment_name, attachment_name,
               base64.encodebytes(attachment).decode().replace("\n", "\r\n"), b)).encode("utf-8")


def outer(sender="Carol Partner <%s>" % inboundtest.CAROL, subject="Quarterly figures",
          mime_version=True, extra=()):
    """Top-level fields of a message from outside, without Content-*
    (and without MIME-Version when the signed output brings its own)."""
    h = inboundtest.outer_headers(subject=subject, extra=extra)
    h = [(n, sender if n == "From" else v) for n, v in h]
    if not mime_version:
        h = [(n, v) for n, v in h if n != "MIME-Version"]
    return h


def message(headers, entity):
    """A message: headers, then the entity's own fields (Content-* and
    whatever the signing tool wrote, e.g. MIME-Version) and body."""
    head = sgtest.make_message(headers, b"")       # ends with the blank line
    return head[:-2] + canon(entity)


# --------------------------------------------------------------------------
# OpenPGP signatures made by gpg


def pgp_detach_sign(home, data, signer=None, extra=()):
    """An armored detached signature over the exact bytes of data, made by
    gpg in home (with the key of signer, an address, when given)."""
    args = ["--armor", "--detach-sign", "--digest-algo", "SHA256"]
    if signer:
        args += ["--local-user", "<%s>" % signer]
    return home.gpg(*(list(extra) + args), input_bytes=data).stdout


def pgp_signed_entity(home, entity, signer=None, extra=(), boundary=None):
    """RFC 3156 multipart/signed entity (Content-Type field, blank line,
    body; CRLF) around entity and gpg's detached signature over it."""
    sig = pgp_detach_sign(home, canon(entity), signer, extra)
    b = boundary or "sig-" + os.urandom(6).hex()
    return (("Content-Type: multipart/signed; micalg=pgp-sha256;\r\n"
             " protocol=\"application/pgp-signature\";\r\n"
             " boundary=\"%s\"\r\n\r\n" % b).encode()
            + b"This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n"
            + b"--" + b.encode() + b"\r\n" + canon(entity)
            + b"\r\n--" + b.encode() + b"\r\n"
            + b"Content-Type: application/pgp-signature; name=\"OpenPGP_signature.asc\"\r\n"
            + b"Content-Description: OpenPGP digital signature\r\n"
            + b"Content-Disposition: attachment; filename=\"OpenPGP_signature.asc\"\r\n\r\n"
            + canon(sig).rstrip(b"\r\n") + b"\r\n"
            + b"\r\n--" + b.encode() + b"--\r\n")


def pgp_signed_message(home, entity, headers=None, signer=None, extra=(), boundary=None):
    return message(headers if headers is not None else outer(),
                   pgp_signed_entity(home, entity, signer, extra, boundary))


def gpg_sign_encrypt(sender_home, data, recipients, signer=None):
    """An armored OpenPGP message signed and encrypted in one go (`gpg
    --sign --encrypt`)."""
    args = ["--trust-model", "always", "--armor", "--sign", "--encrypt"]
    if signer:
        args += ["--local-user", "<%s>" % signer]
    for r in recipients:
        args += ["--recipient", "<%s>" % r]
    return sender_home.gpg(*args, input_bytes=data).stdout


# --------------------------------------------------------------------------
# S/MIME signatures made by openssl


def smime_sign(scratch, ident, entity, opaque=False, md="sha256", certfiles=()):
    """openssl cms -sign of entity (exact bytes, -binary) with ident's key:
    the MIME output (MIME-Version, Content-* fields and body) with CRLF line
    ends; detached multipart/signed, or opaque signed-data with opaque=True.
    certfiles: extra certificates put into the signature."""
    data = scratch.file("entity", canon(entity))
    args = ["cms", "-sign", "-binary", "-md", md, "-signer", ident.cert,
            "-inkey", ident.key, "-in", data, "-crlfeol"]
    if opaque:
        args.append("-nodetach")
    for c in certfiles:
        args += ["-certfile", c]
    out = smimetest.openssl(*args).stdout
    return canon(out)


def smime_signed_message(scratch, ident, entity, headers=None, opaque=False, md="sha256"):
    h = headers if headers is not None else outer(mime_version=False)
    return message(h, smime_sign(scratch, ident, entity, opaque=opaque, md=md))


def openssl_verifies(scratch, msg, ca_file):
    """openssl's own verdict on a signed message (openssl cms -verify, its
    own MIME parser, ca_file the only anchor): (ok, stderr text)."""
    path = scratch.file("eml", msg)
    cp = smimetest.openssl("cms", "-verify", "-in", path, "-CAfile", ca_file,
                           "-purpose", "smimesign", "-out", "/dev/null", check=False)
    return cp.returncode == 0, cp.stderr.decode("utf-8", "replace")


def gpg_verifies(home, scratch, armored_sig, data):
    """gpg's own verdict on a detached signature: (ok, status text)."""
    sig = scratch.file("asc", armored_sig)
    content = scratch.file("content", data)
    cp = home.gpg("--status-fd", "1", "--verify", sig, content, check=False)
    text = (cp.stdout + cp.stderr).decode("utf-8", "replace")
    return cp.returncode == 0 and "[GNUPG:] GOODSIG" in text, text


def opaque_content_flip(msg):
    """msg (an opaque signed-data message) with one byte of the signed
    content inside the CMS object inverted and the base64 body re-encoded:
    the structure stays readable, only the signature can tell."""
    fields, body = split_header_body(canon(msg))
    der = bytearray(base64.b64decode(b"".join(body.split())))
    pos = bytes(der).find(b"Content-Type: text/plain")
    if pos < 0:
        raise ValueError("signed content not found in the CMS object")
    pos = bytes(der).find(b"\r\n\r\n", pos) + 6   # a byte inside the text
    der[pos] ^= 0x01
    b64 = base64.encodebytes(bytes(der)).replace(b"\n", b"\r\n")
    head = b"".join(("%s: %s\r\n" % (n, v)).encode("utf-8") for n, v in fields)
    return head + b"\r\n" + b64


def flip_in_signed_text(msg, needle):
    """msg with the first byte of needle (text inside the signed part)
    changed to another letter; everything else byte for byte."""
    pos = msg.find(needle)
    if pos < 0:
        raise ValueError("%r not in message" % needle)
    b = bytearray(msg)
    b[pos] = ord("X") if b[pos] != ord("X") else ord("Y")
    return bytes(b)


# --------------------------------------------------------------------------
# Reading what sealgate wrote


def parse_status(value):
    """(word, {name: value}, [names in order]) of a status field value.
    Raises AssertionError when the value is not "WORD(; name=value)*"."""
    parts = value.split(";")
    word = parts[0].strip()
    params, names = {}, []
    for p in parts[1:]:
        name, sep, v = p.strip().partition("=")
        if not sep or not re.fullmatch(r"[a-z]+", name):
            raise AssertionError("malformed parameter %r in %r" % (p, value))
        names.append(name)
        params[name] = v
    return word, params, names


def status(out):
    """(X-Sealgate-Decrypted values, X-Sealgate-Signature values, names of
    the last two header fields) of out."""
    return inboundtest.status_fields(out)


def expected_unchanged(original, dec=NOT_ENCRYPTED, sig="none"):
    """What sealgate delivers when it changes nothing but the status
    fields: the original without any incoming status fields, its own two
    appended."""
    return sgtest.with_fields_appended(inboundtest.without_status_fields(original),
                                       ((DECRYPTED, dec), (SIGNATURE, sig)))


def subject(out):
    vals = sgtest.field_values(out, "Subject")
    return [sgtest.decoded_value(v) for v in vals]


class VerifyCase:
    """Mix-in for unittest.TestCase."""

    def run_inbound(self, gw, msg, rcpts=(inboundtest.ALICE,), sender=inboundtest.CAROL):
        """sealgate process for inbound mail; asserts exit 0, verdict
        accept, a message written, exactly one of each status field and
        those two the last of the header, the signature status well formed.
        Returns (output, stderr, decrypted value, signature value)."""
        rc, out, err = gw.process(msg, sender, list(rcpts), client_ip=sgtest.OUTSIDE_IP)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sgtest.verdict(err), "accept", err)
        self.assertIsNotNone(out, "no message written")
        dec, sig, last = status(out)
        self.assertEqual(len(dec), 1, "X-Sealgate-Decrypted fields: %r" % dec)
        self.assertEqual(len(sig), 1, "X-Sealgate-Signature fields: %r" % sig)
        self.assertEqual([n.lower() for n in last], [DECRYPTED.lower(), SIGNATURE.lower()],
                         "the status fields are not the last two of the header")
        self.assert_clean_status(sig[0])
        word, _p, names = parse_status(sig[0])
        self.assertIn(word, STATUS_WORDS, sig[0])
        self.assertEqual(len(names), len(set(names)), "repeated parameter: %r" % sig[0])
        self.assertEqual(gw.spool_entries(), [], "files left in the spool directory")
        return out, err, dec[0], sig[0]

    def assert_clean_status(self, value):
        """No CR, LF or other control characters, printable ASCII, bounded."""
        self.assertFalse(re.search(r"[\x00-\x1f\x7f]", value),
                         "control character in status value %r" % value)
        self.assertTrue(all(32 <= ord(c) < 127 for c in value),
                        "non-ASCII character in status value %r" % value)
        self.assertLessEqual(len(value), MAX_STATUS_LEN, "status value too long: %r" % value)

    def assert_unchanged(self, original, out, dec=NOT_ENCRYPTED, sig="none"):
        """out is original byte for byte apart from the status fields."""
        want = expected_unchanged(original, dec, sig)
        self.assertTrue(out == want, "message changed beyond the status fields:\n"
                        "--- got ---\n%r\n--- expected ---\n%r" % (out[:2500], want[:2500]))

    def assert_entity_delivered(self, original, out, entity):
        """out has the original's top-level fields other than Content-*
        (same order; incoming status fields removed), then the entity's
        Content-* fields, the two status fields last, and the entity's body."""
        inboundtest.assert_entity_in_place(self, original, out, entity, "signed")


def header_names(msg):
    fields, _ = split_header_body(canon(msg))
    return [n.lower() for n, _v in fields]


def values(msg, name):
    fields, _ = split_header_body(canon(msg))
    return header_values(fields, name)
