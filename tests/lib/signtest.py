"""Helpers for the signing tests (multipart/signed, RFC 1847 / RFC 8551 /
RFC 3156). Standard library only; run with Debian's /usr/bin/python3.
Builds on sgtest (messages, GnuPG homes, the gateway) and smimetest (the
test CA, the gpgsm home).

Every signature sealgate makes is checked with an independent
implementation, never with sealgate's own code:

  - S/MIME: `openssl cms -verify` with the test CA as the only trust anchor,
    once on the detached signature with the first body part given as the
    exact bytes between the MIME boundaries (-binary: no line-end
    conversion), and once on the whole message (openssl parses the
    multipart/signed itself); `gpgsm --verify SIGFILE DATAFILE` in a gpgsm
    home that trusts the test CA (trustlist.txt, CRL checks off).
  - OpenPGP: `gpg --verify SIGFILE DATAFILE` in a GnuPG home that holds
    only the signer's public key.

signed_parts() splits a multipart/signed message into the signed content
(byte for byte, RFC 1847: from after the first delimiter line to before
the CRLF of the next one) and the signature part; leaves() and
decode_body() look inside the signed content to compare it with the
original.
"""

import base64
import binascii
import os
import re

import postfix
import sgtest
import smimetest
from sgtest import canon, header_values, is_content_field, norm_fields, norm_value, \
    parse_content_type, split_header_body

SMIME_SIG = "application/pkcs7-signature"
PGP_SIG = "application/pgp-signature"
MAX_LINE = 998          # RFC 5322 line length limit, CRLF excluded


# --------------------------------------------------------------------------
# Small file and status helpers


def write(path, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)
    return path


class Scratch:
    """Numbered scratch files in a directory, so that every check leaves its
    inputs behind for debugging (SGTEST_KEEP=1)."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.n = 0

    def file(self, suffix, data):
        self.n += 1
        return write(os.path.join(self.path, "%03d.%s" % (self.n, suffix)), data)


def status_lines(text):
    """[(KEYWORD, [args...])] of the "[GNUPG:] ..." lines in text."""
    out = []
    for m in re.finditer(r"^\[GNUPG:\] (\S+)(.*)$", text, re.M):
        out.append((m.group(1), m.group(2).split()))
    return out


def status_args(text, keyword):
    """Argument lists of every status line with this keyword."""
    return [args for kw, args in status_lines(text) if kw == keyword]


# --------------------------------------------------------------------------
# Taking a multipart/signed message apart


class Signed:
    """A multipart/signed message or entity, taken apart.

    fields: its header fields; ctype: its Content-Type (for get_param);
    boundary; content: the signed first body part, exact bytes (header,
    blank line, body; no line ending of its own at the end: that CRLF
    belongs to the next delimiter); sig_fields / sig_body: the second
    part's header fields and body; preamble and epilogue.
    """

    def __init__(self, fields, ctype, boundary, content, sig_fields, sig_body,
                 preamble, epilogue):
        self.fields = fields
        self.ctype = ctype
        self.boundary = boundary
        self.content = content
        self.sig_fields = sig_fields
        self.sig_body = sig_body
        self.preamble = preamble
        self.epilogue = epilogue


def signed_parts(tc, msg, protocol, micalg):
    """Check msg (bytes, CRLF line ends) is multipart/signed with these
    protocol and micalg parameters and exactly two body parts; return a
    Signed.

    The body is split on the exact delimiter lines: CRLF "--" boundary CRLF
    (no transport padding is expected from sealgate), the close delimiter
    CRLF "--" boundary "--".
    """
    tc.assertNotRegex(msg, rb"(?<!\r)\n", "bare LF in a CRLF message")
    tc.assertNotRegex(msg, rb"\r(?!\n)", "bare CR in the message")
    fields, body = split_header_body(msg)
    cts = header_values(fields, "Content-Type")
    tc.assertEqual(len(cts), 1, "Content-Type fields: %r" % cts)
    ctype, ct = parse_content_type(cts[0])
    tc.assertEqual(ctype, "multipart/signed", cts[0])
    tc.assertEqual((ct.get_param("protocol") or "").lower(), protocol, cts[0])
    tc.assertEqual((ct.get_param("micalg") or "").lower(), micalg, cts[0])
    boundary = ct.get_param("boundary")
    tc.assertTrue(boundary, "multipart/signed without boundary")
    tc.assertLessEqual(len(boundary), 70, "boundary longer than RFC 2046 allows")

    delim = b"\r\n--" + boundary.encode("ascii")
    text = b"\r\n" + body
    first = text.find(delim + b"\r\n")
    tc.assertGreaterEqual(first, 0, "no first delimiter line")
    preamble = text[2:first + 2] if first > 0 else b""
    start = first + len(delim) + 2
    second = text.find(delim + b"\r\n", start)
    tc.assertGreater(second, 0, "no second delimiter line")
    content = text[start:second]
    sig_start = second + len(delim) + 2
    close = text.find(delim + b"--", sig_start)
    tc.assertGreater(close, 0, "no close delimiter")
    sig_part = text[sig_start:close]
    epilogue = text[close + len(delim) + 2:]
    tc.assertNotIn(delim, sig_part, "more than two body parts")
    sig_fields, sig_body = split_header_body(sig_part + b"\r\n")
    return Signed(fields, ct, boundary, content, sig_fields, sig_body, preamble, epilogue)


def smime_signature(tc, signed):
    """The DER of the S/MIME signature part of signed (a Signed), after
    checking its header: application/pkcs7-signature with name="smime.p7s",
    base64 in lines of at most 76 characters."""
    f = signed.sig_fields
    cts = header_values(f, "Content-Type")
    tc.assertEqual(len(cts), 1, "signature part Content-Type fields: %r" % cts)
    ctype, ct = parse_content_type(cts[0])
    tc.assertEqual(ctype, SMIME_SIG)
    tc.assertEqual(ct.get_param("name"), "smime.p7s")
    tc.assertEqual([norm_value(v).lower() for v in header_values(f, "Content-Transfer-Encoding")],
                   ["base64"])
    lines = signed.sig_body.split(b"\r\n")
    while lines and lines[-1] == b"":
        lines.pop()
    tc.assertTrue(lines, "empty signature part")
    for line in lines:
        tc.assertRegex(line, rb"^[A-Za-z0-9+/=]{1,76}$",
                       "not a base64 line of at most 76 characters")
    der = base64.b64decode(b"".join(lines), validate=True)
    tc.assertEqual(der[:1], b"\x30", "signature is not a DER SEQUENCE")
    return der


def pgp_signature(tc, signed):
    """The armored detached signature of signed (a Signed), after checking
    the second part is application/pgp-signature."""
    cts = header_values(signed.sig_fields, "Content-Type")
    tc.assertEqual(len(cts), 1, "signature part Content-Type fields: %r" % cts)
    tc.assertEqual(parse_content_type(cts[0])[0], PGP_SIG)
    body = signed.sig_body
    tc.assertIn(b"-----BEGIN PGP SIGNATURE-----", body)
    tc.assertIn(b"-----END PGP SIGNATURE-----", body)
    return body


def assert_outer_fields_kept(tc, original, out, ctype="multipart/signed"):
    """The top-level fields of out other than Content-* are the original's
    (same order and values; MIME-Version: 1.0 added when it was missing);
    the only Content-* fields are one Content-Type of type ctype and,
    optionally, Content-Transfer-Encoding: 7bit."""
    of, _ = split_header_body(canon(original))
    nf, _ = split_header_body(canon(out))
    orig_other = [(n.lower(), v) for n, v in of if not is_content_field(n)]
    new_other = [(n.lower(), v) for n, v in nf if not is_content_field(n)]
    if not header_values(of, "MIME-Version") and ("mime-version", "1.0") in new_other:
        new_other.remove(("mime-version", "1.0"))
    tc.assertEqual(new_other, orig_other, "outer header fields other than Content-* changed")
    tc.assertEqual([norm_value(v) for v in header_values(nf, "MIME-Version")], ["1.0"])
    content = [(n.lower(), norm_value(v)) for n, v in nf if is_content_field(n)]
    tc.assertEqual([n for n, _v in content].count("content-type"), 1, content)
    for n, v in content:
        if n != "content-type":
            tc.assertTrue(n == "content-transfer-encoding" and v.lower() == "7bit",
                          "unexpected outer field %s: %s" % (n, v))
    tc.assertEqual(parse_content_type(header_values(nf, "Content-Type")[0])[0], ctype)


# --------------------------------------------------------------------------
# Inside the signed content


def assert_7bit_safe(tc, entity, what="signed content"):
    """entity holds only 7-bit characters other than NUL, CR and LF appear
    only as CRLF pairs, and no line is longer than 998 characters."""
    bad = [i for i, c in enumerate(entity) if c >= 0x80 or c == 0]
    tc.assertFalse(bad, "%s has 8-bit or NUL bytes, first at offset %s: %r"
                   % (what, bad[:1], entity[max(0, (bad or [0])[0] - 20):(bad or [0])[0] + 20]))
    tc.assertNotRegex(entity, rb"(?<!\r)\n", "%s has a bare LF" % what)
    tc.assertNotRegex(entity, rb"\r(?!\n)", "%s has a bare CR" % what)
    longest = max(len(line) for line in entity.split(b"\r\n"))
    tc.assertLessEqual(longest, MAX_LINE, "%s has a line of %d characters" % (what, longest))


def cte(fields):
    """The Content-Transfer-Encoding of fields, lower case ("7bit" when absent)."""
    v = header_values(fields, "Content-Transfer-Encoding")
    return norm_value(v[0]).lower() if v else "7bit"


def decode_body(fields, body):
    """The body of a leaf decoded from its transfer encoding (bytes)."""
    enc = cte(fields)
    if enc == "base64":
        return base64.b64decode(b"".join(body.split()), validate=True)
    if enc == "quoted-printable":
        return binascii.a2b_qp(body)
    return body


def leaves(entity):
    """[(fields, body)] of the leaf entities of a MIME entity (bytes, CRLF),
    depth first; multiparts are split with sgtest.split_multipart."""
    fields, body = split_header_body(entity)
    cts = header_values(fields, "Content-Type")
    if cts:
        ctype, ct = parse_content_type(cts[0])
        if ctype.startswith("multipart/"):
            out = []
            for part in sgtest.split_multipart(body, ct.get_param("boundary")):
                out += leaves(part)
            return out
    return [(fields, body)]


def content_fields(msg):
    """The top-level Content-* fields of msg, normalised (norm_fields)."""
    fields, _ = split_header_body(canon(msg))
    return norm_fields([f for f in fields if is_content_field(f[0])])


def without_cte(nfields):
    return [(n, v) for n, v in nfields if n != "content-transfer-encoding"]


# --------------------------------------------------------------------------
# Independent verifiers


def cms_signer_info(der):
    """(digest algorithm short names, number of certificates) of a CMS
    SignedData, from `openssl cms -cmsout -print`."""
    text = smimetest.cms_print(der)
    digests = re.findall(r"digestAlgorithm:\s*\n\s*algorithm: (\S+)", text)
    certs = len(re.findall(r"^\s*d\.certificate:\s*$", text, re.M))
    return digests, certs, text


def openssl_verify_detached(scratch, content, der, ca_file):
    """`openssl cms -verify -binary` of the detached signature der over the
    exact bytes content, trusting only ca_file. Returns (returncode, stderr
    text, SHA-256 fingerprints of the signer certificates)."""
    sig = scratch.file("p7s", der)
    data = scratch.file("content", content)
    signers = scratch.file("signers.pem", b"")
    cp = smimetest.openssl("cms", "-verify", "-binary", "-inform", "DER", "-in", sig,
                           "-content", data, "-CAfile", ca_file, "-purpose", "smimesign",
                           "-signer", signers, "-out", "/dev/null", check=False)
    fprs = []
    pem = smimetest.read_file(signers)
    for block in re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?",
                            pem, re.S):
        fprs.append(smimetest.cert_fingerprint(scratch.file("signer.pem", block)))
    return cp.returncode, cp.stderr.decode("utf-8", "replace"), fprs


def openssl_verify_message(scratch, msg, ca_file):
    """`openssl cms -verify` of a whole multipart/signed message (openssl's
    own S/MIME parser finds the content and the signature). Returns
    (returncode, stderr text, the content openssl wrote)."""
    path = scratch.file("eml", msg)
    out = scratch.file("verified", b"")
    cp = smimetest.openssl("cms", "-verify", "-in", path, "-CAfile", ca_file,
                           "-purpose", "smimesign", "-out", out, check=False)
    return cp.returncode, cp.stderr.decode("utf-8", "replace"), smimetest.read_file(out)


def gpgsm_verify(home, scratch, der, content):
    """`gpgsm --verify SIG DATA` in home (a smimetest.GpgsmHome). Returns
    (returncode, status and diagnostics text)."""
    sig = scratch.file("p7s", der)
    data = scratch.file("content", content)
    cp = home.gpgsm("--status-fd", "1", "--verify", sig, data, check=False)
    return cp.returncode, (cp.stdout + cp.stderr).decode("utf-8", "replace")


def gpg_verify(home, scratch, armored, content):
    """`gpg --verify SIG DATA` in home (an sgtest.GpgHome). Returns
    (returncode, status and diagnostics text)."""
    sig = scratch.file("asc", armored)
    data = scratch.file("content", content)
    cp = home.gpg("--status-fd", "1", "--verify", sig, data, check=False)
    return cp.returncode, (cp.stdout + cp.stderr).decode("utf-8", "replace")


def gpgsm_home(path, ca):
    """A gpgsm home that trusts ca (a smimetest.TestCA) for S/MIME."""
    home = smimetest.GpgsmHome(path)
    home.trust(ca)
    return home


def assert_smime_verifies(tc, scratch, msg, ca, gpgsm, signer):
    """msg (bytes, CRLF) is an S/MIME multipart/signed message or entity
    signed by signer (a smimetest.Identity) with SHA-256: openssl verifies
    the detached signature over the exact first part and the whole message,
    trusting only ca (a smimetest.TestCA); gpgsm (a GpgsmHome trusting ca)
    reports one good, fully trusted signature by signer. Returns the
    Signed."""
    s = signed_parts(tc, msg, SMIME_SIG, "sha-256")
    der = smime_signature(tc, s)
    digests, _ncerts, text = cms_signer_info(der)
    tc.assertIn("pkcs7-signedData", text)
    tc.assertEqual(set(digests), {"sha256"}, text)
    rc, err, fprs = openssl_verify_detached(scratch, s.content, der, ca.cert)
    tc.assertEqual(rc, 0, "openssl cms -verify (detached) failed: %s" % err)
    tc.assertIn("Verification successful", err)
    tc.assertEqual(fprs, [signer.fpr], "signer certificate")
    rc, err, verified = openssl_verify_message(scratch, msg, ca.cert)
    tc.assertEqual(rc, 0, "openssl cms -verify (whole message) failed: %s" % err)
    tc.assertEqual(canon(verified), s.content, "openssl found other signed content")
    rc, text = gpgsm_verify(gpgsm, scratch, der, s.content)
    tc.assertEqual(rc, 0, "gpgsm --verify failed: %s" % text)
    tc.assertEqual(len(status_args(text, "GOODSIG")), 1, text)
    valid = status_args(text, "VALIDSIG")
    tc.assertEqual([v[0].upper() for v in valid], [signer.sha1], text)
    tc.assertEqual(valid[0][7], "8", "gpgsm: digest algorithm is not SHA-256")
    tc.assertTrue(status_args(text, "TRUST_FULLY") or status_args(text, "TRUST_ULTIMATE"),
                  text)
    return s


def assert_pgp_verifies(tc, scratch, msg, home, fpr):
    """msg (bytes, CRLF) is an OpenPGP multipart/signed message signed with
    SHA-256 by the key with fingerprint fpr: gpg in home (which holds the
    signer's public key) reports one good signature. Returns the Signed."""
    s = signed_parts(tc, msg, PGP_SIG, "pgp-sha256")
    sig = pgp_signature(tc, s)
    rc, text = gpg_verify(home, scratch, sig, s.content)
    tc.assertEqual(rc, 0, "gpg --verify failed: %s" % text)
    tc.assertEqual(len(status_args(text, "GOODSIG")), 1, text)
    valid = status_args(text, "VALIDSIG")
    tc.assertEqual(len(valid), 1, text)
    tc.assertEqual(valid[0][9].upper(), fpr, "not signed with the expected key")
    tc.assertEqual(valid[0][7], "8", "hash algorithm is not SHA-256 (micalg=pgp-sha256)")
    return s


# --------------------------------------------------------------------------
# A private Postfix whose relay does not announce 8BITMIME


def start_milter_and_postfix(state, binary, sink_args=("-8",), extra_main=None):
    """Like miltertest.start_milter_and_postfix, but smtp-sink runs with
    sink_args (by default -8: no 8BITMIME in its EHLO reply, so Postfix's
    SMTP client converts 8-bit mail to 7-bit on the way to it). Adds milter
    and pf to state."""
    gw = state["gw"]
    milter = postfix.MilterProcess(
        lambda spec: [binary, "milter", "-c", gw.policy, "-s", spec, "-f"] +
        sgtest.milter_user_args(),
        os.path.join(state["tmp"], "sealgate.log"))
    milter.start()
    state["milter"] = milter
    pf = postfix.PrivatePostfix(milter.postfix_spec, extra_main=extra_main, start=False)
    state["pf"] = pf
    pf.sink.extra_args = list(pf.sink.extra_args) + list(sink_args)
    try:
        pf.start()
    except BaseException:
        pf.stop()
        raise
    return state


def ehlo_features(port, host="127.0.0.1"):
    """The EHLO keywords (upper case) a server on port announces."""
    import smtplib
    s = smtplib.SMTP(host, port, local_hostname="probe.sgtest.invalid", timeout=10)
    try:
        s.ehlo()
        return set(k.upper() for k in s.esmtp_features)
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()


def openssl_sign_entity(entity, ident, scratch):
    """A multipart/signed message body made by openssl itself (not by
    sealgate): entity signed as is with ident's key (-binary, so 8-bit
    content stays 8-bit). Returns (content type value, body bytes)."""
    data = scratch.file("entity", entity)
    cp = smimetest.openssl("cms", "-sign", "-binary", "-md", "sha256", "-signer", ident.cert,
                           "-inkey", ident.key, "-outform", "DER", "-in", data)
    der = cp.stdout
    boundary = "ctrl-" + os.urandom(6).hex()
    b64 = base64.encodebytes(der).replace(b"\n", b"\r\n")
    body = (b"--" + boundary.encode() + b"\r\n" + entity + b"\r\n--" + boundary.encode()
            + b"\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + b64
            + b"--" + boundary.encode() + b"--\r\n")
    ctype = ('multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;'
             '\r\n boundary="%s"' % boundary)
    return ctype, body
