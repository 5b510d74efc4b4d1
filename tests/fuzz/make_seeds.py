#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/TARGET/)
from the example identities (keys-example/) with the real gpg and openssl:
small real messages (plain, PGP/MIME, inline PGP, S/MIME enveloped and
signed, multipart/signed, deeply nested, malformed), policy files, OpenPGP
packets and CMS DER. Run it again when a target's input changes; the
files it writes replace those of the same name.

usage: make_seeds.py [--all] [CORPUS_DIR]   (default: tests/fuzz/corpus)

Only seeds that are not there yet are written; --all writes every one anew.
"""
import base64
import os
import re
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))

import sgtest  # noqa: E402
import smimetest  # noqa: E402

KEYS = os.path.join(SRC, "keys-example")
SMIME = os.path.join(KEYS, "smime")
# Signatures are checked against the Date (signature_date_tolerance):
# the messages carry the time they are made.
DATE = sgtest.rfc5322_date()
CRLF = b"\r\n"


def key_file(*parts):
    with open(os.path.join(KEYS, *parts), "rb") as f:
        return f.read()


def message(headers, body):
    """A message with CRLF line ends from [(name, value)] and a body."""
    if isinstance(body, str):
        body = body.encode()
    head = b"".join(("%s: %s" % hv).encode() + CRLF for hv in headers)
    return head + CRLF + sgtest.canon(body)


def inbound_headers(subject, sender="Carol Partner <carol@partner.example>",
                    extra=()):
    return [("Received", "from mx.partner.example (mx.partner.example "
             "[192.0.2.7])\r\n\tby mx.example.com (Postfix) with ESMTPS id "
             "4ABCD123"),
            ("From", sender), ("To", "Alice Example <alice@example.com>"),
            ("Subject", subject), ("Date", DATE),
            ("Message-ID", "<%s@partner.example>" % subject.replace(" ", "-")),
            ("MIME-Version", "1.0")] + list(extra)


def outbound_headers(subject, extra=()):
    return [("From", "Alice Example <alice@example.com>"),
            ("To", "Frank Partner <frank@smime.example>"),
            ("Subject", subject), ("Date", DATE),
            ("Message-ID", "<%s@example.com>" % re.sub(r"\W", "-", subject)),
            ("MIME-Version", "1.0")] + list(extra)


TEXT = ("Hello,\n\nthe figures for the third quarter are attached.\n\n"
        "-- \nCarol\n")
ENTITY = ("Content-Type: text/plain; charset=utf-8\n"
          "Content-Transfer-Encoding: 8bit\n\n" + TEXT + "Gr\u00fc\u00dfe\n")


def mixed(boundary="mixed-b"):
    return ("Content-Type: multipart/mixed; boundary=\"%s\"\n\n"
            "--%s\nContent-Type: text/plain; charset=us-ascii\n\n%s\n"
            "--%s\nContent-Type: application/octet-stream; name=\"q3.bin\"\n"
            "Content-Disposition: attachment; filename=\"q3.bin\"\n"
            "Content-Transfer-Encoding: base64\n\n%s\n--%s--\n"
            % (boundary, boundary, TEXT, boundary,
               base64.encodebytes(bytes(range(120))).decode(), boundary))


def split_entity(entity):
    """(header fields, body) of an entity given as text (LF or CRLF)."""
    lf, crlf = entity.find("\n\n"), entity.find("\r\n\r\n")
    sep = "\r\n\r\n" if crlf >= 0 and (lf < 0 or crlf < lf) else "\n\n"
    head, _, body = entity.partition(sep)
    fields = []
    for line in head.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t"):
            fields[-1] = (fields[-1][0], fields[-1][1] + "\r\n" + line)
        else:
            name, _, value = line.partition(":")
            fields.append((name, value.strip()))
    return fields, body


class Tools:
    def __init__(self, tmp):
        self.tmp = tmp
        self.gpg = sgtest.GpgHome(os.path.join(tmp, "g"))
        for name in ("carol.sec.asc", "alice.pub.asc", "dave.pub.asc"):
            self.gpg.import_keys(key_file("openpgp", name))

    def path(self, name, data):
        p = os.path.join(self.tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def pgp_encrypt(self, data, sign=False, armor=True, extra=()):
        args = ["--trust-model", "always", "--encrypt", "-r", "alice@example.com"]
        if sign:
            args += ["--sign", "-u", "carol@partner.example"]
        if armor:
            args.append("--armor")
        return self.gpg.gpg(*(args + list(extra)),
                            input_bytes=sgtest.canon(data)).stdout

    def pgp_sign(self, data):
        return self.gpg.gpg("--armor", "--detach-sign", "-u",
                            "carol@partner.example", "--digest-algo", "SHA256",
                            input_bytes=data).stdout

    def cms(self, *args, data=b""):
        return smimetest.openssl("cms", *args, input_bytes=data).stdout

    def smime_encrypt(self, data, cipher="-aes-256-gcm", extra=()):
        return self.cms("-encrypt", "-binary", cipher, "-outform", "DER",
                        "-recip", os.path.join(SMIME, "alice.pem"), *extra,
                        data=sgtest.canon(data))

    def smime_sign(self, data, detached, signer="frank"):
        args = ["-sign", "-binary", "-outform", "DER", "-md", "sha256",
                "-signer", os.path.join(SMIME, signer + ".pem"),
                "-inkey", os.path.join(SMIME, signer + ".key")]
        if not detached:
            args.append("-nodetach")
        return self.cms(*args, data=sgtest.canon(data))


def b64(der):
    return base64.encodebytes(der).decode()


def pgp_mime(armored, boundary="enc-b"):
    return ("Content-Type: multipart/encrypted; protocol=\"application/"
            "pgp-encrypted\"; boundary=\"%s\"\n\n"
            "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\n"
            "--%s\nContent-Type: application/pgp-encrypted\n"
            "Content-Description: PGP/MIME version identification\n\n"
            "Version: 1\n\n--%s\nContent-Type: application/octet-stream; "
            "name=\"encrypted.asc\"\nContent-Description: OpenPGP encrypted "
            "message\nContent-Disposition: inline; filename=\"encrypted.asc\""
            "\n\n%s\n--%s--\n" % (boundary, boundary, boundary,
                                  armored.decode(), boundary))


def smime_enveloped(der, authenveloped):
    return ("Content-Type: application/pkcs7-mime; smime-type=%s; "
            "name=\"smime.p7m\"\nContent-Transfer-Encoding: base64\n"
            "Content-Disposition: attachment; filename=\"smime.p7m\"\n\n%s"
            % ("authEnveloped-data" if authenveloped else "enveloped-data",
               b64(der)))


def multipart_signed(entity, sig, protocol, micalg, boundary="sig-b",
                     sig_type=None, sig_cte=None):
    head = ("Content-Type: multipart/signed; micalg=%s; protocol=\"%s\"; "
            "boundary=\"%s\"\n\n" % (micalg, protocol, boundary))
    sig_head = "Content-Type: %s" % (sig_type or protocol)
    if sig_cte:
        sig_head += "\nContent-Transfer-Encoding: " + sig_cte
    return (head + "This is a signed message.\n--%s\n" % boundary, entity,
            "\n--%s\n%s\n\n%s\n--%s--\n" % (boundary, sig_head, sig, boundary))


def signed_entity_bytes(parts):
    """The whole multipart/signed entity with CRLF line ends."""
    return b"".join(sgtest.canon(p.encode() if isinstance(p, str) else p)
                    for p in parts)


def as_message(headers, entity):
    """A message whose top-level entity is entity (text or bytes)."""
    if isinstance(entity, str):
        entity = entity.encode()
    fields, body = split_entity(entity.decode("latin-1"))
    return message(headers + fields, body.encode("latin-1"))


def nested(depth, leaf):
    text = leaf
    for i in range(depth):
        b = "n%d" % i
        text = ("Content-Type: multipart/mixed; boundary=\"%s\"\n\n--%s\n%s\n"
                "--%s--\n" % (b, b, text, b))
    return text


def inbound_seeds(t):
    out = {}
    h = inbound_headers
    out["plain.eml"] = message(h("plain"), TEXT)
    out["mixed.eml"] = as_message(h("mixed attachment"), mixed())
    out["forged-status.eml"] = message(
        h("forged status", extra=[("X-Sealgate-Decrypted", "yes; method=openpgp; "
                                   "integrity=mdc"),
                                  ("x-sealgate-signature", "valid; signer=ceo@example.com")]),
        TEXT)
    armored = t.pgp_encrypt(ENTITY.encode())
    out["pgp-mime.eml"] = as_message(h("pgp mime"), pgp_mime(armored))
    out["pgp-mime-signed-inside.eml"] = as_message(
        h("pgp mime signed inside"), pgp_mime(t.pgp_encrypt(ENTITY.encode(), sign=True)))
    out["pgp-inline.eml"] = message(
        h("pgp inline", extra=[("Content-Type", "text/plain; charset=us-ascii")]),
        t.pgp_encrypt(TEXT.encode()))
    out["pgp-mime-not-for-alice.eml"] = as_message(
        h("pgp for dave"),
        pgp_mime(t.gpg.gpg("--trust-model", "always", "--encrypt", "--armor",
                           "-r", "dave@partner.example",
                           input_bytes=ENTITY.encode()).stdout))
    signed_part = sgtest.canon(ENTITY.encode())
    pgp_sig = t.pgp_sign(signed_part).decode()
    out["pgp-signed.eml"] = as_message(h("pgp signed"), signed_entity_bytes(
        multipart_signed(ENTITY, pgp_sig, "application/pgp-signature",
                         "pgp-sha256")))
    # S/MIME from frank (the example CA is the keystore's trust anchor).
    fh = lambda s: h(s, sender="Frank Partner <frank@smime.example>")  # noqa: E731
    der = t.smime_encrypt(ENTITY.encode())
    out["smime-gcm.eml"] = as_message(fh("smime gcm"), smime_enveloped(der, True))
    # Nothing inside: decryption gives no plaintext at all.
    out["smime-gcm-empty.eml"] = as_message(fh("smime gcm empty"),
                                            smime_enveloped(t.smime_encrypt(b""), True))
    out["pgp-mime-empty.eml"] = as_message(h("pgp mime empty"),
                                           pgp_mime(t.pgp_encrypt(b"")))
    der = t.smime_encrypt(ENTITY.encode(), "-aes-128-cbc")
    out["smime-cbc-unsigned.eml"] = as_message(fh("smime cbc"), smime_enveloped(der, False))
    opaque = t.smime_sign(ENTITY.encode(), detached=False)
    signed = ("Content-Type: application/pkcs7-mime; smime-type=signed-data; "
              "name=\"smime.p7m\"\nContent-Transfer-Encoding: base64\n\n" + b64(opaque))
    out["smime-opaque-signed.eml"] = as_message(fh("smime opaque signed"), signed)
    der = t.smime_encrypt(signed.encode(), "-aes-256-cbc")
    out["smime-cbc-signed.eml"] = as_message(fh("smime cbc signed"),
                                             smime_enveloped(der, False))
    detached = t.smime_sign(signed_part, detached=True)
    parts = multipart_signed(ENTITY, b64(detached), "application/pkcs7-signature",
                             "sha-256", sig_cte="base64")
    out["smime-detached-signed.eml"] = as_message(fh("smime detached"),
                                                  signed_entity_bytes(parts))
    der = t.smime_encrypt(signed_entity_bytes(parts), "-aes-256-gcm")
    out["smime-gcm-signed.eml"] = as_message(fh("smime gcm signed"),
                                             smime_enveloped(der, True))
    out["nested-deep.eml"] = as_message(h("nested"), nested(40, "Content-Type: "
                                                            "text/plain\n\ndeep\n"))
    out["nested-partial-encryption.eml"] = as_message(
        h("partial"), nested(3, pgp_mime(armored, boundary="inner-enc")))
    out["malformed.eml"] = (
        b"From: carol@partner.example\r\nTo alice\r\nSubject: =?utf-8?q?bro=ZZken?=\r\n"
        b"Content-Type: multipart/mixed; boundary=\"x\r\n MIME-Version: 1.0\r\n"
        b"\r\n--x\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAxgg\r\n"
        b"--x\r\n--x--\r\n")
    out["lf-only.eml"] = message(h("lf only"), TEXT).replace(CRLF, b"\n")
    return out


def outbound_seeds(t):
    out = {}
    h = outbound_headers
    out["plain.eml"] = message(h("plain"), TEXT)
    out["secure-tag.eml"] = message(h("[secure] figures"), TEXT)
    out["secure-tag-encoded.eml"] = message(
        h("=?utf-8?q?=5Bsecure=5D_Zahlen_f=C3=BCr_Q3?="), TEXT)
    out["sensitivity.eml"] = message(
        h("sensitive", extra=[("Sensitivity", "Company-Confidential")]), TEXT)
    out["mip-label.eml"] = message(
        h("labelled", extra=[("msip_labels", "MSIP_Label_0a1b2c3d-1111-2222-3333-"
                              "444455556666_Enabled=true;\r\n MSIP_Label_0a1b2c3d-"
                              "1111-2222-3333-444455556666_Name=Confidential;")]),
        TEXT)
    out["mixed.eml"] = as_message(h("mixed attachment"), mixed())
    out["8bit-qp.eml"] = as_message(
        h("quoted printable"),
        "Content-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe, =\nsoft break\n")
    out["already-pgp.eml"] = as_message(h("already pgp"), pgp_mime(t.pgp_encrypt(ENTITY.encode())))
    der = t.cms("-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER",
                os.path.join(SMIME, "frank.pem"), data=sgtest.canon(ENTITY.encode()))
    out["already-smime.eml"] = as_message(h("already smime"), smime_enveloped(der, True))
    out["labelled-not-encrypted.eml"] = as_message(
        h("label only"), pgp_mime(b"-----BEGIN PGP MESSAGE-----\n\n"
                                  b"bm90IGVuY3J5cHRlZA==\n-----END PGP MESSAGE-----"))
    out["nested-deep.eml"] = as_message(h("nested"), nested(40, "Content-Type: "
                                                            "text/plain\n\ndeep\n"))
    out["malformed.eml"] = (
        b"From: alice@example.com\r\nSubject: [secure]\r\nSubject: second\r\n"
        b"Content-Type: multipart/alternative; boundary=\r\n\r\n--\r\n\r\n--\r\n")
    out["large.eml"] = message(h("large"), ("0123456789abcdef" * 4 + "\n") * 520)
    return out


def policy_seeds():
    out = {}
    with open(os.path.join(SRC, "policy.yaml.example"), "rb") as f:
        out["example.yaml"] = f.read()
    with open(os.path.join(HERE, "policy.yaml"), "rb") as f:
        out["fuzz.yaml"] = f.read()
    out["minimal.yaml"] = b"version: 1\ngateway: { keystore: keys }\n"
    out["logins.yaml"] = (b"version: 1\ngateway:\n  keystore: keys\n"
                          b"  sender_logins: logins\n  signing_networks: "
                          b"[192.0.2.0/24, \"2001:db8::/32\"]\n"
                          b"internal_domains: [example.com, \"b\xc3\xbccher.example\"]\n")
    out["errors.yaml"] = (b"version: 1\ngateway: &g { keystore: [x], bogus: 1 }\n"
                          b"outbound:\n  rules:\n    - name: a\n      action: encrypt\n"
                          b"    - name: a\n      when: { header: { name: X, matches: \"(\" } }\n"
                          b"      action: explode\n      on_missing_key: reject\n"
                          b"      strip_tag: true\ninbound: { signature_date_tolerance: 400d }\n")
    out["flow.yaml"] = (b"{version: 1, gateway: {keystore: k, max_message_size: 12G},"
                        b" outbound: {default: {action: sign, methods: smime},"
                        b" rules: [{name: r, when: {size_over: 1K, recipient: "
                        b"\"*.partner.example\"}, action: none}]}}\n")
    return out


def openpgp_seeds(t):
    out = {}
    out["encrypted.asc"] = t.pgp_encrypt(TEXT.encode())
    out["encrypted.bin"] = t.pgp_encrypt(TEXT.encode(), armor=False)
    out["signed-encrypted.bin"] = t.pgp_encrypt(TEXT.encode(), sign=True, armor=False)
    out["two-recipients.bin"] = t.gpg.gpg(
        "--trust-model", "always", "--encrypt", "-r", "alice@example.com",
        "-r", "dave@partner.example", input_bytes=TEXT.encode()).stdout
    out["hidden-recipient.bin"] = t.gpg.gpg(
        "--trust-model", "always", "--encrypt", "--throw-keyids", "-r",
        "alice@example.com", input_bytes=TEXT.encode()).stdout
    out["symmetric.bin"] = t.gpg.gpg("--symmetric", "--passphrase", "x",
                                     input_bytes=TEXT.encode()).stdout
    # Streamed from a pipe, gpg writes partial body lengths.
    out["partial-lengths.bin"] = t.pgp_encrypt(os.urandom(9000), armor=False,
                                               extra=("--compress-algo", "none"))
    out["armor-headers.asc"] = out["encrypted.asc"].replace(
        b"-----\n\n", b"-----\nVersion: GnuPG v2\nComment: seed\n\n", 1)
    out["clearsigned.asc"] = t.gpg.gpg("--clearsign", "-u", "carol@partner.example",
                                       input_bytes=TEXT.encode()).stdout
    out["signed.bin"] = t.gpg.gpg("--sign", "-u", "carol@partner.example",
                                  input_bytes=TEXT.encode()).stdout
    out["public-key.asc"] = key_file("openpgp", "alice.pub.asc")
    cp = t.gpg.gpg("--rfc2440", "--trust-model", "always", "--encrypt",
                   "--cipher-algo", "AES256", "-r", "alice@example.com",
                   input_bytes=TEXT.encode(), check=False)
    if cp.returncode == 0 and cp.stdout:
        out["no-mdc.bin"] = cp.stdout
    return out


def cms_seeds(t):
    out = {}
    out["gcm.der"] = t.smime_encrypt(ENTITY.encode())
    out["cbc.der"] = t.smime_encrypt(ENTITY.encode(), "-aes-256-cbc")
    out["cbc-oaep.der"] = t.smime_encrypt(ENTITY.encode(), "-aes-128-cbc",
                                          extra=("-keyopt", "rsa_padding_mode:oaep"))
    out["3des.der"] = t.smime_encrypt(ENTITY.encode(), "-des3")
    out["gcm-stream-ber.der"] = t.smime_encrypt(ENTITY.encode(), "-aes-128-gcm",
                                                extra=("-stream",))
    out["two-recipients.der"] = t.cms(
        "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER",
        os.path.join(SMIME, "frank.pem"), os.path.join(SMIME, "alice.pem"),
        data=b"two\r\n")
    out["signed-opaque.der"] = t.smime_sign(ENTITY.encode(), detached=False)
    out["signed-detached.der"] = t.smime_sign(
        b"Content-Type: text/plain\r\n\r\nhello\r\n", detached=True)
    out["signed-alice.der"] = t.smime_sign(b"hello\r\n", detached=False,
                                           signer="alice")
    out["certs-only.der"] = smimetest.openssl(
        "crl2pkcs7", "-nocrl", "-certfile", os.path.join(SMIME, "ca.pem"),
        "-outform", "DER").stdout
    return out


def split_seeds(inbound):
    """Boundary line, then the body of a multipart/signed entity."""
    out = {}
    for name in ("pgp-signed.eml", "smime-detached-signed.eml"):
        msg = inbound[name]
        head, _, body = msg.partition(b"\r\n\r\n")
        boundary = re.search(rb'boundary="([^"]+)"', head).group(1)
        out[name.replace(".eml", ".txt")] = boundary + b"\n" + body
    out["lf.txt"] = b"b\n--b\nContent-Type: text/plain\n\nhello\n--b\n\nSIG\n--b--\n"
    out["nested-prefix.txt"] = (b"outer-b\n--outer-b\r\nContent-Type: multipart/mixed;"
                                b" boundary=outer\r\n\r\n--outer\r\n\r\none\r\n"
                                b"--outer--\r\n\r\n--outer-b\r\nSIG\r\n--outer-b--\r\n")
    out["cr-after-delimiter.txt"] = (b"b\n--b\r\n\r\nhello\r\n--b\rshown\r\n\r\n"
                                     b"SIG\r\n--b--\r\n")
    out["padding-epilogue.txt"] = (b"b\npreamble\r\n--b \t\r\n\r\nhello\r\n--b\t\r\n"
                                   b"SIG\r\n--b-- \r\nepilogue\r\n--b--\r\n")
    out["empty-boundary.txt"] = b"\n--\r\n\r\nx\r\n--\r\ny\r\n----\r\n"
    return out


def main(argv):
    rewrite = "--all" in argv
    argv = [a for a in argv if a != "--all"]
    corpus = argv[1] if len(argv) > 1 else os.path.join(HERE, "corpus")
    tmp = sgtest.tmpdir("sgseed")
    t = Tools(tmp)
    try:
        inbound = inbound_seeds(t)
        sets = {
            "inbound": inbound,
            "outbound": outbound_seeds(t),
            "policy": policy_seeds(),
            "openpgp": openpgp_seeds(t),
            "cms": cms_seeds(t),
            "split_signed": split_seeds(inbound),
        }
    finally:
        t.gpg.kill()
    for target, files in sets.items():
        d = os.path.join(corpus, target)
        os.makedirs(d, exist_ok=True)
        written = 0
        for name, data in files.items():
            path = os.path.join(d, name)
            if rewrite or not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(data)
                written += 1
        print("%s: %d seed(s), %d written" % (target, len(files), written))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
