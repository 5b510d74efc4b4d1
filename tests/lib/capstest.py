"""S/MIME signatures whose SMIMECapabilities attribute the tests choose.

Standard library only; run with Debian's /usr/bin/python3. Builds on
smimetest (openssl), verifytest (entities, outer fields) and der.

`openssl cms -sign` announces a fixed list (AES-256-CBC, AES-192-CBC,
AES-128-CBC, 3DES, RC2, DES) or, with -nosmimecap, none. To announce
something else (AES-GCM, a huge list, an unknown algorithm) a signature
that openssl made is changed the way a mail program that announces it
would have made it: its SMIMECapabilities (and, when asked, signingTime)
signed attribute is replaced, and the signed attributes are signed again
with `openssl dgst -sha256 -sign` and the signer's key. `openssl cms
-verify` then checks each such signature (signature_verifies), so that no
test rests on a signature that only sealgate would accept.
"""

import base64
import datetime
import os
import re

import der
import smimetest
import verifytest as vt
from sgtest import canon

CAPS_OID = "1.2.840.113549.1.9.15"
SIGNING_TIME_OID = "1.2.840.113549.1.9.5"

# Capability identifiers (RFC 8551 2.5.2, RFC 5084, RFC 3565).
OIDS = {
    "aes-256-gcm": "2.16.840.1.101.3.4.1.46",
    "aes-128-gcm": "2.16.840.1.101.3.4.1.6",
    "aes-256-cbc": "2.16.840.1.101.3.4.1.42",
    "aes-192-cbc": "2.16.840.1.101.3.4.1.22",
    "aes-128-cbc": "2.16.840.1.101.3.4.1.2",
    "des-ede3-cbc": "1.2.840.113549.3.7",
    "rc2-cbc": "1.2.840.113549.3.2",
    "des-cbc": "1.3.14.3.2.7",
    "unknown": "1.3.6.1.4.1.99999.1.2.3",
}


def capability(name, params=None):
    """One SMIMECapability: SEQUENCE { OID [, params (DER bytes)] }."""
    children = [der.Node(der.OID, value=der.oid(OIDS[name]))]
    if params is not None:
        children.append(der.parse(params))
    return der.Node(der.SEQUENCE, children=children)


def capabilities(*names):
    """SMIMECapabilities value for cipher names (no parameters)."""
    return der.Node(der.SEQUENCE, children=[capability(n) for n in names])


def _attribute(oid_dotted, values):
    # DER: the elements of a SET OF in the order of their encodings.
    return der.Node(der.SEQUENCE, children=[
        der.Node(der.OID, value=der.oid(oid_dotted)),
        der.Node(der.SET, children=sorted(values, key=der.encode))])


def _utctime(when):
    return der.Node(0x17, value=when.astimezone(datetime.timezone.utc)
                    .strftime("%y%m%d%H%M%SZ").encode())


def _signer_info(root):
    signed_data = root[1][0]
    return signed_data.children[-1][0]          # signerInfos SET -> first


def _attr_oid(attr):
    return attr[0].value


def resign(der_bytes, ident, caps_values=None, signing_time=None):
    """der_bytes (openssl's SignedData) with the SMIMECapabilities
    attribute's values replaced by caps_values (a list of der.Node: one
    value each; [] removes the attribute; None keeps it), signingTime set
    to signing_time (a datetime) when given, and the signed attributes
    signed again with ident's key."""
    root = der.parse(der_bytes)
    si = _signer_info(root)
    idx = next(i for i, c in enumerate(si.children) if c.tag == 0xA0)
    attrs = [a for a in si[idx].children]
    if caps_values is not None:
        attrs = [a for a in attrs if _attr_oid(a) != der.oid(CAPS_OID)]
        if caps_values:
            attrs.append(_attribute(CAPS_OID, caps_values))
    if signing_time is not None:
        attrs = [a for a in attrs if _attr_oid(a) != der.oid(SIGNING_TIME_OID)]
        attrs.append(_attribute(SIGNING_TIME_OID, [_utctime(signing_time)]))
    # DER: the elements of a SET OF in the order of their encodings.
    attrs.sort(key=der.encode)
    si.children[idx] = der.Node(0xA0, children=attrs)
    to_sign = der.encode(der.Node(der.SET, children=attrs))
    sig = smimetest.openssl("dgst", "-sha256", "-sign", ident.key, input_bytes=to_sign).stdout
    sidx = next(i for i, c in enumerate(si.children) if c.tag == der.OCTET_STRING)
    si.children[sidx] = der.Node(der.OCTET_STRING, value=sig)
    return der.encode(root)


def sign_detached(scratch, ident, entity, caps="openssl", signing_time=None):
    """A detached signature (DER) over entity's exact bytes by ident.
    caps: "openssl" (what `openssl cms -sign` announces), None (-nosmimecap),
    a list of cipher names, or a list of der.Node values of the attribute
    (several values: several announcements in one attribute)."""
    data = scratch.file("entity", canon(entity))
    args = ["cms", "-sign", "-binary", "-md", "sha256", "-signer", ident.cert,
            "-inkey", ident.key, "-outform", "DER", "-in", data]
    if caps is None:
        args.append("-nosmimecap")
    out = smimetest.openssl(*args).stdout
    if isinstance(caps, list):
        values = caps if caps and isinstance(caps[0], der.Node) else [capabilities(*caps)]
        out = resign(out, ident, values, signing_time)
    elif signing_time is not None:
        out = resign(out, ident, None, signing_time)
    return out


def signed_message(scratch, ident, entity, headers=None, **kw):
    """A multipart/signed message (CRLF): headers (default: from Carol,
    verifytest.outer), entity and a detached signature from sign_detached."""
    sig = sign_detached(scratch, ident, entity, **kw)
    boundary = "sig-" + os.urandom(6).hex()
    b64 = base64.encodebytes(sig).replace(b"\n", b"\r\n")
    body = (b"This is an S/MIME signed message\r\n\r\n--" + boundary.encode() + b"\r\n"
            + canon(entity) + b"\r\n--" + boundary.encode() + b"\r\n"
            b"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n"
            + b64 + b"\r\n--" + boundary.encode() + b"--\r\n")
    h = list(headers if headers is not None else vt.outer())
    h.append(("Content-Type", 'multipart/signed; protocol="application/pkcs7-signature"; '
                              'micalg=sha-256; boundary="%s"' % boundary))
    return vt.message(h, b"") + body, sig


def signature_verifies(scratch, entity, sig, ca_file):
    """openssl's own verdict on a detached signature over entity: (ok,
    stderr text)."""
    s = scratch.file("p7s", sig)
    data = scratch.file("content", canon(entity))
    cp = smimetest.openssl("cms", "-verify", "-binary", "-inform", "DER", "-in", s,
                           "-content", data, "-CAfile", ca_file, "-purpose", "smimesign",
                           "-out", "/dev/null", check=False)
    return cp.returncode == 0, cp.stderr.decode("utf-8", "replace")


def announced(sig):
    """The algorithm names of the SMIMECapabilities in sig, as `openssl
    cms -cmsout -print` shows them (None when there is no such attribute)."""
    text = smimetest.cms_print(sig)
    m = re.search(r"object: S/MIME Capabilities \(1\.2\.840\.113549\.1\.9\.15\)\s*\n"
                  r"\s*set:\s*\n\s*SEQUENCE:\s*\n((?:\s*\d+:d=.*\n)+)", text)
    if not m:
        return None
    return re.findall(r"d=2\s+hl=\d+\s+l=\s*\d+\s+prim:\s+OBJECT\s+:(\S+)", m.group(1))
