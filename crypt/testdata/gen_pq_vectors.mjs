// Known-answer vectors for the experimental hybrid TEP x25519mlkem768
// (TEP 0x20: the X-Wing KEM, X25519 + ML-KEM-768) and a whole tcpcrypt
// handshake over it (RFC 8548).
//
// This is an implementation independent of the Go code: ML-KEM-768, X25519,
// SHA3 and X-Wing come from the @noble packages (pinned in package.json and
// package-lock.json beside this file), HKDF-Extract and CPRF are written out
// with Node's HMAC. X-Wing is computed twice, by @noble/post-quantum's
// ml_kem768_x25519 and by hand from its parts, and the two must agree.
//
// Regenerate from this directory (the output is deterministic: every seed
// is derived from a fixed text label):
//
//	npm ci && node gen_pq_vectors.mjs > pq_vectors.json
import { createHash, createHmac } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { sha3_256, shake256 } from '@noble/hashes/sha3.js';

const TEP = 0x20; // RFC 8547 §11 experimental identifier
const X25519_TEP = 0x23;
const INIT1_MAGIC = 0x15101a0e;
const INIT2_MAGIC = 0x097105e0;
const K_LEN = 32; // RFC 8548 §5
const N_LEN = 32;
// RFC 8548 §4.3 Table 1.
const CONST = { nextk: 0x01, sessid: 0x02, rekey: 0x03, keyA: 0x04, keyB: 0x05, resume: 0x06 };
// RFC 8548 §7 Table 5: AEAD -> [key length, nonce length].
const AEADS = { 0x0001: [16, 12], 0x0002: [32, 12], 0x0010: [32, 12] };
const AEAD_NAMES = { 0x0001: 'aes128gcm', 0x0002: 'aes256gcm', 0x0010: 'chacha20poly1305' };
const LABEL = Buffer.from('\\.//^\\', 'latin1'); // X-Wing's domain separator

const hex = (b) => Buffer.from(b).toString('hex');
const cat = (...parts) => Buffer.concat(parts.map((p) => Buffer.from(p)));
const eq = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
function check(cond, what) {
  if (!cond) throw new Error('self-check failed: ' + what);
}

// labelBytes derives n fixed bytes from a text label.
function labelBytes(label, n) {
  const out = [];
  for (let i = 0; Buffer.concat(out).length < n; i++) {
    out.push(createHash('sha256').update(`tcpcryptd-pq-vectors|${i}|${label}`).digest());
  }
  return Buffer.concat(out).subarray(0, n);
}

// --- HKDF with SHA-256 (RFC 8548 §3.1 Figure 1), written out ---
const extract = (salt, ikm) => createHmac('sha256', salt).update(ikm).digest();
function cprf(key, cnst, len) {
  let out = Buffer.alloc(0);
  let t = Buffer.alloc(0);
  for (let n = 1; out.length < len; n++) {
    t = createHmac('sha256', key).update(cat(t, cnst, [n])).digest();
    out = cat(out, t);
  }
  return out.subarray(0, len);
}

function selfTest() {
  // RFC 5869 test case 1: PRK.
  const prk = extract(Buffer.from('000102030405060708090a0b0c', 'hex'), Buffer.alloc(22, 0x0b));
  check(hex(prk) === '077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5', 'RFC 5869 PRK');
  // RFC 7748 §6.1.
  const a = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex');
  const bpub = Buffer.from('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f', 'hex');
  check(hex(x25519.getSharedSecret(a, bpub)) === '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742', 'RFC 7748 §6.1');
}

// --- X-Wing, by hand from ML-KEM-768, X25519, SHA3 and SHAKE256 ---
function xwingKeygen(seed) {
  const exp = shake256(seed, { dkLen: 96 });
  const m = ml_kem768.keygen(exp.subarray(0, 64)); // d || z
  const skX = exp.subarray(64, 96);
  const pkX = x25519.getPublicKey(skX);
  return { pkM: m.publicKey, skM: m.secretKey, skX, pkX, pub: cat(m.publicKey, pkX) };
}
function xwingCombine(ssM, ssX, ctX, pkX) {
  return sha3_256(cat(ssM, ssX, ctX, pkX, LABEL));
}
function xwingEncaps(pub, eseed) {
  const pkM = pub.subarray(0, 1184);
  const pkX = pub.subarray(1184);
  const ekX = eseed.subarray(32, 64);
  const ctX = x25519.getPublicKey(ekX);
  const ssX = x25519.getSharedSecret(ekX, pkX);
  const { cipherText: ctM, sharedSecret: ssM } = ml_kem768.encapsulate(pkM, eseed.subarray(0, 32));
  return { ct: cat(ctM, ctX), ss: xwingCombine(ssM, ssX, ctX, pkX), ssM, ssX };
}

// kexVector computes one X-Wing exchange both ways and checks that the
// hand-made X-Wing and noble's ml_kem768_x25519 agree.
function kexVector(name) {
  const seed = labelBytes(name + '-seed_a', 32);
  const eseed = labelBytes(name + '-eseed_b', 64);
  const k = xwingKeygen(seed);
  const e = xwingEncaps(k.pub, eseed);
  const nk = ml_kem768_x25519.keygen(seed);
  check(eq(nk.publicKey, k.pub), name + ': noble X-Wing public key');
  const ne = ml_kem768_x25519.encapsulate(k.pub, eseed);
  check(eq(ne.cipherText, e.ct) && eq(ne.sharedSecret, e.ss), name + ': noble X-Wing encapsulation');
  check(eq(ml_kem768_x25519.decapsulate(e.ct, nk.secretKey), e.ss), name + ': noble X-Wing decapsulation');
  const ssM = ml_kem768.decapsulate(e.ct.subarray(0, 1088), k.skM);
  const ssX = x25519.getSharedSecret(k.skX, e.ct.subarray(1088));
  check(eq(xwingCombine(ssM, ssX, e.ct.subarray(1088), k.pkX), e.ss), name + ': hand decapsulation');
  return {
    name, tep: TEP, seed_a: hex(seed), eseed_b: hex(eseed),
    pub_a: hex(k.pub), ct_b: hex(e.ct), ss_mlkem: hex(e.ssM), ss_x25519: hex(e.ssX), es: hex(e.ss),
  };
}

// badKeys are encapsulation keys FIPS 203 §7.2's modulus check refuses:
// a 12-bit coefficient >= q = 3329 in a valid key's ML-KEM part.
function badKeys() {
  const k = xwingKeygen(labelBytes('bad-ek', 32));
  const out = [];
  for (const [i, lo, hi] of [[0, 0xff, 0x0f], [500, 0x01, 0x0d], [766, 0x00, 0x0e]]) {
    // Coefficients pack two per three bytes (ByteEncode_12); set
    // the even coefficient i of t (i < 768) to lo | (hi & 0x0f) << 8.
    const b = Buffer.from(k.pub);
    const off = 3 * (i >> 1);
    b[off] = lo;
    b[off + 1] = (b[off + 1] & 0xf0) | (hi & 0x0f);
    const coeff = b[off] | ((b[off + 1] & 0x0f) << 8);
    check(coeff >= 3329, 'bad coefficient');
    let refused = false;
    try {
      ml_kem768.encapsulate(b.subarray(0, 1184), Buffer.alloc(32, 1));
    } catch {
      refused = true;
    }
    check(refused, 'noble refuses the bad key');
    out.push(hex(b));
  }
  return out;
}

function init1(ciphers, nA, pubA) {
  const body = cat([ciphers.length], ...ciphers.map((c) => [c >> 8, c & 0xff]), nA, pubA);
  const h = Buffer.alloc(8);
  h.writeUInt32BE(INIT1_MAGIC, 0);
  h.writeUInt32BE(8 + body.length, 4);
  return cat(h, body);
}
function init2(cipher, nB, pubB) {
  const body = cat([cipher >> 8, cipher & 0xff], nB, pubB);
  const h = Buffer.alloc(8);
  h.writeUInt32BE(INIT2_MAGIC, 0);
  h.writeUInt32BE(8 + body.length, 4);
  return cat(h, body);
}
const enoOption = (contents) => cat([0x45, 2 + contents.length], contents);

function trafficKeys(mk, aead) {
  const [kl, nl] = AEADS[aead];
  return [cprf(mk, [CONST.keyA], kl + nl), cprf(mk, [CONST.keyB], kl + nl)];
}

// handshake is a fresh key exchange over TEP 0x20 and one resumption,
// with the same fields as the handshakes of vectors.json.
function handshake(aead) {
  const name = 'x25519mlkem768-' + AEAD_NAMES[aead];
  // A offers x25519 and, preferred, x25519mlkem768; B (global suboption
  // 0x01: b bit) answers 0x20.
  const transcript = cat(enoOption([X25519_TEP, TEP]), enoOption([0x01, TEP]));
  const seed = labelBytes(name + '-seed_a', 32);
  const eseed = labelBytes(name + '-eseed_b', 64);
  const nA = labelBytes(name + '-n_a', N_LEN);
  const nB = labelBytes(name + '-n_b', N_LEN);
  const offered = [0x0001, 0x0002, 0x0010];
  const k = xwingKeygen(seed);
  const e = xwingEncaps(k.pub, eseed);
  const i1 = init1(offered, nA, k.pub);
  const i2 = init2(aead, nB, e.ct);
  const es = e.ss;
  const ss0 = extract(nA, cat(transcript, i1, i2, es));
  const sessionID = cat([TEP], cprf(ss0, [CONST.sessid], K_LEN));
  const mk0 = cprf(ss0, [CONST.rekey], K_LEN);
  const mk1 = cprf(mk0, [CONST.rekey], K_LEN);
  const [kab0, kba0] = trafficKeys(mk0, aead);
  const [kab1, kba1] = trafficKeys(mk1, aead);
  const resume0 = cprf(ss0, [CONST.resume], 18);
  const ss1 = cprf(ss0, [CONST.nextk], K_LEN);
  const resume1 = cprf(ss1, [CONST.resume], 18);
  const nonceA = labelBytes(name + '-nonce_a', 8);
  const nonceB = labelBytes(name + '-nonce_b', 8);
  const sn = cat(nonceA, nonceB);
  const rTEPByte = 0x80 | TEP;
  const rSID = cat([rTEPByte], cprf(ss1, cat([CONST.sessid], sn), K_LEN));
  const rMK0 = cprf(ss1, cat([CONST.rekey], sn), K_LEN);
  const [rkab0, rkba0] = trafficKeys(rMK0, aead);
  return {
    name, tep: TEP, aeads_offered: offered, aead, transcript: hex(transcript),
    priv_a: hex(seed), priv_b: hex(eseed), n_a: hex(nA), n_b: hex(nB),
    init1: hex(i1), init2: hex(i2),
    es: hex(es), ss0: hex(ss0), session_id: hex(sessionID),
    mk0: hex(mk0), mk1: hex(mk1),
    k_ab0: hex(kab0), k_ba0: hex(kba0), k_ab1: hex(kab1), k_ba1: hex(kba1),
    resume0: hex(resume0), ss1: hex(ss1), resume1: hex(resume1),
    resumed: {
      index: 1, tep_byte: rTEPByte, nonce_a: hex(nonceA), nonce_b: hex(nonceB),
      session_id: hex(rSID), mk0: hex(rMK0), k_ab0: hex(rkab0), k_ba0: hex(rkba0),
    },
  };
}

selfTest();
const out = {
  comment: 'Generated by gen_pq_vectors.mjs (see README.md); do not edit.',
  kex: ['xwing-0', 'xwing-1', 'xwing-2'].map(kexVector),
  bad_public_keys: badKeys(),
  handshakes: [0x0001, 0x0002, 0x0010].map(handshake),
};
process.stdout.write(JSON.stringify(out, null, 1) + '\n');
