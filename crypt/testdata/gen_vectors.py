#!/usr/bin/env python3
"""Known-answer vectors for tcpcryptd's crypt/ packages (RFC 8548).

This is a second implementation, independent of the Go code: key agreement
and AEADs come from python3-cryptography, and HKDF (Extract / CPRF) is written
here with the standard hmac module, so the Go tests compare two separately
written derivations.

Regenerate (from the repository root):

    python3 crypt/testdata/gen_vectors.py > crypt/testdata/vectors.json

The output is deterministic: private keys, nonces and frame contents are
derived from fixed labels, never from a random source.
"""

import hashlib
import hmac
import json
import struct
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519, x448
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

# RFC 8548 §4.3 Table 1.
CONST_NEXTK = 0x01
CONST_SESSID = 0x02
CONST_REKEY = 0x03
CONST_KEY_A = 0x04
CONST_KEY_B = 0x05
CONST_RESUME = 0x06
INIT1_MAGIC = 0x15101A0E
INIT2_MAGIC = 0x097105E0
K_LEN = 32  # RFC 8548 §5
N_LEN = 32  # N_A_LEN = N_B_LEN, RFC 8548 §5

# TEP identifiers (RFC 8548 §7 Table 4).
P256, P521, X25519, X448 = 0x21, 0x22, 0x23, 0x24
# AEAD identifiers (RFC 8548 §7 Table 5) -> (ae_key_len, ae_nonce_len, class).
AES128GCM, AES256GCM, CHACHA = 0x0001, 0x0002, 0x0010
AEADS = {
    AES128GCM: (16, 12, AESGCM),
    AES256GCM: (32, 12, AESGCM),
    CHACHA: (32, 12, ChaCha20Poly1305),
}
TAG_LEN = 16

# Group orders, FIPS 186-4 D.1.2.3 and D.1.2.5 (only used to check that the
# fixed private scalars below are in range).
ORDER = {
    P256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    P521: int(
        "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "fffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
        16,
    ),
}
PRIV_LEN = {P256: 32, P521: 66, X25519: 32, X448: 56}


# --- HKDF with SHA-256, RFC 8548 §3.1 Figure 1 (RFC 5869), via hmac only ---

def extract(salt, ikm):
    """Extract(S, IKM) = HMAC-SHA256(key=S, msg=IKM)."""
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def cprf(key, const, length):
    """CPRF(K, CONST, L): first L bytes of T(1)|T(2)|...,
    T(n) = HMAC-SHA256(K, T(n-1) | CONST | n) with a one-octet counter."""
    assert 0 < length <= 255 * 32
    out, t, n = b"", b"", 1
    while len(out) < length:
        t = hmac.new(key, t + const + bytes([n]), hashlib.sha256).digest()
        out += t
        n += 1
    return out[:length]


def self_test_hkdf():
    # RFC 5869 Appendix A.1 (Test Case 1).
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    prk = extract(salt, ikm)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = cprf(prk, info, 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        "34007208d5b887185865"
    )


def self_test_x25519_x448():
    # RFC 7748 §6.1 and §6.2: the library agrees with the RFC.
    h = bytes.fromhex
    a = x25519.X25519PrivateKey.from_private_bytes(
        h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    b = x25519.X25519PublicKey.from_public_bytes(
        h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
    assert a.exchange(b).hex() == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    a = x448.X448PrivateKey.from_private_bytes(h(
        "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28dd9c9baf5"
        "74a9419744897391006382a6f127ab1d9ac2d8c0a598726b"))
    b = x448.X448PublicKey.from_public_bytes(h(
        "3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b43027d8b972"
        "fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609"))
    assert a.exchange(b).hex() == (
        "07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282bb60c0b56"
        "fd2464c335543936521c24403085d59a449a5037514a879d")


# --- deterministic inputs ---

def label_bytes(label, n):
    """n bytes derived from a text label (SHA-256 in counter mode)."""
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(b"tcpcryptd-vectors|%d|%s" % (i, label.encode())).digest()
        i += 1
    return out[:n]


def private_bytes(tep, label):
    """A fixed private key in the exact form kex.Group.GenerateKey consumes:
    PRIV_LEN bytes; for P-521 the first byte is masked to its low bit; NIST
    scalars must lie in [1, n-1] so GenerateKey accepts the first candidate."""
    b = bytearray(label_bytes(label, PRIV_LEN[tep]))
    if tep == P521:
        b[0] &= 0x01
    if tep in ORDER:
        d = int.from_bytes(b, "big")
        assert 0 < d < ORDER[tep], label
    return bytes(b)


# --- key agreement, RFC 8548 §5 ---

def keypair(tep, priv):
    """Returns (private key object, wire encoding of the public key)."""
    if tep == X25519:
        k = x25519.X25519PrivateKey.from_private_bytes(priv)
        return k, k.public_key().public_bytes_raw()
    if tep == X448:
        k = x448.X448PrivateKey.from_private_bytes(priv)
        return k, k.public_key().public_bytes_raw()
    curve = ec.SECP256R1() if tep == P256 else ec.SECP521R1()
    k = ec.derive_private_key(int.from_bytes(priv, "big"), curve)
    pt = k.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    # 2-byte big-endian pubkey_len, then the compressed point.
    return k, struct.pack(">H", len(pt)) + pt


def agree(tep, k, peer_wire):
    """ES: X25519/X448 output, or the NIST x-coordinate as fixed-length bytes."""
    if tep == X25519:
        es = k.exchange(x25519.X25519PublicKey.from_public_bytes(peer_wire))
    elif tep == X448:
        es = k.exchange(x448.X448PublicKey.from_public_bytes(peer_wire))
    else:
        curve = ec.SECP256R1() if tep == P256 else ec.SECP521R1()
        (n,) = struct.unpack(">H", peer_wire[:2])
        assert n == len(peer_wire) - 2
        pub = ec.EllipticCurvePublicKey.from_encoded_point(curve, peer_wire[2:])
        es = k.exchange(ec.ECDH(), pub)
    assert any(es), "all-zero ES"
    return es


def kex_vector(tep):
    name = "kex-%02x" % tep
    pa, pb = private_bytes(tep, name + "-a"), private_bytes(tep, name + "-b")
    ka, wa = keypair(tep, pa)
    kb, wb = keypair(tep, pb)
    es = agree(tep, ka, wb)
    assert es == agree(tep, kb, wa)
    return {"tep": tep, "priv_a": pa.hex(), "priv_b": pb.hex(),
            "pub_a": wa.hex(), "pub_b": wb.hex(), "es": es.hex()}


# --- messages, RFC 8548 §4.1 ---

def init1(ciphers, n_a, pub_a):
    body = bytes([len(ciphers)]) + b"".join(struct.pack(">H", c) for c in ciphers) + n_a + pub_a
    return struct.pack(">II", INIT1_MAGIC, 8 + len(body)) + body


def init2(cipher, n_b, pub_b):
    body = struct.pack(">H", cipher) + n_b + pub_b
    return struct.pack(">II", INIT2_MAGIC, 8 + len(body)) + body


def eno_option(contents):
    """A whole ENO option: kind 69, length, contents (RFC 8547 §4.1)."""
    return bytes([0x45, 2 + len(contents)]) + bytes(contents)


# --- key schedule, RFC 8548 §3.3-§3.5 ---

def traffic_keys(mk, aead):
    klen, nlen, _ = AEADS[aead]
    return cprf(mk, bytes([CONST_KEY_A]), klen + nlen), cprf(mk, bytes([CONST_KEY_B]), klen + nlen)


def handshake(name, tep, offered, aead):
    # A offers every TEP in the default order of increasing preference; B
    # (global suboption 0x01: b bit) answers with the chosen TEP, v = 0.
    syn_a = eno_option([P521, P256, X448, X25519])
    syn_b = eno_option([0x01, tep])
    transcript = syn_a + syn_b
    pa, pb = private_bytes(tep, name + "-a"), private_bytes(tep, name + "-b")
    n_a, n_b = label_bytes(name + "-n_a", N_LEN), label_bytes(name + "-n_b", N_LEN)
    ka, wa = keypair(tep, pa)
    kb, wb = keypair(tep, pb)
    i1, i2 = init1(offered, n_a, wa), init2(aead, n_b, wb)
    es = agree(tep, ka, wb)
    assert es == agree(tep, kb, wa)

    ss0 = extract(n_a, transcript + i1 + i2 + es)
    tep_byte = tep  # as B sent it, v = 0
    session_id = bytes([tep_byte]) + cprf(ss0, bytes([CONST_SESSID]), K_LEN)
    mk0 = cprf(ss0, bytes([CONST_REKEY]), K_LEN)
    mk1 = cprf(mk0, bytes([CONST_REKEY]), K_LEN)
    k_ab0, k_ba0 = traffic_keys(mk0, aead)
    k_ab1, k_ba1 = traffic_keys(mk1, aead)
    resume0 = cprf(ss0, bytes([CONST_RESUME]), 18)
    ss1 = cprf(ss0, bytes([CONST_NEXTK]), K_LEN)
    resume1 = cprf(ss1, bytes([CONST_RESUME]), 18)

    # Resumption with ss[1] (RFC 8548 §3.5): sn = nonce_a | nonce_b, v = 1.
    nonce_a, nonce_b = label_bytes(name + "-nonce_a", 8), label_bytes(name + "-nonce_b", 8)
    sn = nonce_a + nonce_b
    r_tep_byte = 0x80 | tep
    r_sid = bytes([r_tep_byte]) + cprf(ss1, bytes([CONST_SESSID]) + sn, K_LEN)
    r_mk0 = cprf(ss1, bytes([CONST_REKEY]) + sn, K_LEN)
    r_kab0, r_kba0 = traffic_keys(r_mk0, aead)

    return {
        "name": name, "tep": tep, "aeads_offered": list(offered), "aead": aead,
        "transcript": transcript.hex(),
        "priv_a": pa.hex(), "priv_b": pb.hex(), "n_a": n_a.hex(), "n_b": n_b.hex(),
        "init1": i1.hex(), "init2": i2.hex(),
        "es": es.hex(), "ss0": ss0.hex(), "session_id": session_id.hex(),
        "mk0": mk0.hex(), "mk1": mk1.hex(),
        "k_ab0": k_ab0.hex(), "k_ba0": k_ba0.hex(), "k_ab1": k_ab1.hex(), "k_ba1": k_ba1.hex(),
        "resume0": resume0.hex(), "ss1": ss1.hex(), "resume1": resume1.hex(),
        "resumed": {
            "index": 1, "tep_byte": r_tep_byte,
            "nonce_a": nonce_a.hex(), "nonce_b": nonce_b.hex(),
            "session_id": r_sid.hex(), "mk0": r_mk0.hex(),
            "k_ab0": r_kab0.hex(), "k_ba0": r_kba0.hex(),
        },
    }


# --- encryption frames, RFC 8548 §4.2 ---

def frame(aead, traffic_key, offset, control, flags, urgent, data):
    klen, nlen, cls = AEADS[aead]
    key, nr = traffic_key[:klen], traffic_key[klen:klen + nlen]
    plaintext = bytes([flags])
    if flags & 0x02:  # URGp: 2-byte big-endian urgent field follows flags
        plaintext += struct.pack(">H", urgent)
    plaintext += data
    clen = len(plaintext) + TAG_LEN
    assert clen <= 0xFFFF
    ad = bytes([control]) + struct.pack(">H", clen)
    frame_id = bytes(nlen - 8) + struct.pack(">Q", offset)
    nonce = bytes(x ^ y for x, y in zip(frame_id, nr))
    ct = cls(key).encrypt(nonce, plaintext, ad)
    assert len(ct) == clen
    return {"aead": aead, "key": key.hex(), "nr": nr.hex(), "offset": offset,
            "control": control, "flags": flags, "urgent": urgent if flags & 0x02 else None,
            "data": data.hex(), "wire": (ad + ct).hex()}


def main():
    self_test_hkdf()
    self_test_x25519_x448()

    kex = [kex_vector(t) for t in (P256, P521, X25519, X448)]

    all_aeads = [AES128GCM, AES256GCM, CHACHA]
    hs = [
        handshake("x25519-aes128gcm", X25519, [AES128GCM, CHACHA], AES128GCM),
        handshake("x25519-aes256gcm", X25519, all_aeads, AES256GCM),
        handshake("x25519-chacha20poly1305", X25519, [CHACHA], CHACHA),
        handshake("p256-aes128gcm", P256, [AES128GCM], AES128GCM),
        handshake("p521-aes256gcm", P521, [AES256GCM, AES128GCM], AES256GCM),
        handshake("x448-chacha20poly1305", X448, all_aeads, CHACHA),
    ]

    def key(h, name):
        return bytes.fromhex(h[name])

    frames = []
    # One data frame per AEAD, each the first frame of A (offset = len(Init1):
    # frame offsets count the Init1/Init2 bytes, offset 0 = ISN+1).
    for h in hs[:3]:
        off = len(bytes.fromhex(h["init1"]))
        frames.append(frame(h["aead"], key(h, "k_ab0"), off, 0, 0, None, b"hello"))
    # A's stream of x25519-aes128gcm, frame after frame at consecutive
    # offsets: "hello" (generation 0, above), urgent data, then a rekey frame
    # opening generation 1 and the FINp frame, both under k_ab1.
    h = hs[0]
    off_a = len(bytes.fromhex(h["init1"])) + len(bytes.fromhex(frames[0]["wire"]))
    off_b = len(bytes.fromhex(h["init2"]))
    # B's first frame, k_ba0.
    frames.append(frame(h["aead"], key(h, "k_ba0"), off_b, 0, 0, None, b"world!"))
    for k, control, flags, urgent, data in (
            ("k_ab0", 0, 0x02, 2, b"urgent data"),  # URGp, urgent = 2
            ("k_ab1", 1, 0, None, b""),             # rekey = 1, empty
            ("k_ab1", 0, 0x01, None, b"")):         # FINp, empty
        f = frame(h["aead"], key(h, k), off_a, control, flags, urgent, data)
        frames.append(f)
        off_a += len(bytes.fromhex(f["wire"]))
    # A larger frame with a high offset (nonce bytes beyond the low 32 bits).
    h = hs[2]
    frames.append(frame(h["aead"], key(h, "k_ba0"), 0x0123456789ab, 0, 0x01, None, bytes(range(256)) * 4))
    h = hs[5]
    frames.append(frame(h["aead"], key(h, "k_ab0"), len(bytes.fromhex(h["init1"])), 0, 0x03, 0xFFFF, b"x448 urg+fin"))

    json.dump({"kex": kex, "handshakes": hs, "frames": frames}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
