/**
 * Proof of which key sent a message. ZeroMQ tells a ROUTER (or SUB) only the peer's routing id, never the CURVE
 * key that passed ZAP (zeromq.js 6.8 exposes no message metadata, and ZAP's identity frame is the server's own
 * routing id), so clients prefix each request with a proof frame: their Z85 public key and an HMAC-SHA256 of the
 * payload under a key both sides derive from X25519(client secret, server public) = X25519(server secret, client
 * public). Only the holder of that client's secret key (or of the server's) can make it; CURVE already encrypts
 * the channel, so a proof cannot be read off the wire and replayed.
 */
import { createHash, createHmac, createPrivateKey, createPublicKey, diffieHellman, timingSafeEqual, type KeyObject } from 'node:crypto';

const Z85_CHARS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const Z85_INDEX = new Map([...Z85_CHARS].map((c, i) => [c, i]));
/** DER prefixes of raw X25519 keys (PKCS#8 private, SPKI public). */
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const KEY_CHARS = 40;
const MAC_BYTES = 32;
/** Length of a proof frame: the Z85 key, then the MAC. */
export const PROOF_BYTES = KEY_CHARS + MAC_BYTES;

/** Decodes a Z85 string (length a multiple of 5). @throws Error on a character outside Z85 */
export function z85Decode(text: string): Buffer {
  if (text.length % 5 !== 0) throw new Error('z85 text length must be a multiple of 5');
  const out = Buffer.alloc((text.length / 5) * 4);
  for (let i = 0; i < text.length; i += 5) {
    let value = 0;
    for (let j = 0; j < 5; j++) {
      const digit = Z85_INDEX.get(text[i + j]!);
      if (digit === undefined) throw new Error(`'${text[i + j]}' is not a z85 character`);
      value = value * 85 + digit;
    }
    out.writeUInt32BE(value >>> 0, (i / 5) * 4);
  }
  return out;
}

function privateKey(z85: string): KeyObject {
  return createPrivateKey({ key: Buffer.concat([X25519_PKCS8, z85Decode(z85)]), format: 'der', type: 'pkcs8' });
}

function publicKey(z85: string): KeyObject {
  return createPublicKey({ key: Buffer.concat([X25519_SPKI, z85Decode(z85)]), format: 'der', type: 'spki' });
}

/** The MAC key both ends derive; domain-separated from CURVE's own use of the same X25519 output. */
function macKey(secretZ85: string, peerPublicZ85: string): Buffer {
  const shared = diffieHellman({ privateKey: privateKey(secretZ85), publicKey: publicKey(peerPublicZ85) });
  return createHash('sha256').update('pier peer proof v1\0').update(shared).digest();
}

/** Signs payloads as one client key towards one server key. */
export class ProofSigner {
  private readonly key: Buffer;
  private readonly publicKeyBytes: Buffer;

  constructor(client: { publicKey: string; secretKey: string }, serverPublicKey: string) {
    this.key = macKey(client.secretKey, serverPublicKey);
    this.publicKeyBytes = Buffer.from(client.publicKey, 'latin1');
  }

  /** The proof frame to send before `payload`. */
  sign(payload: Uint8Array): Buffer {
    return Buffer.concat([this.publicKeyBytes, createHmac('sha256', this.key).update(payload).digest()]);
  }
}

/** Checks proof frames with the server's secret key; derived keys are cached per client key. */
export class ProofVerifier<T> {
  private readonly keys = new Map<string, Buffer>();

  /** `identities` maps each allowed Z85 public key to what it is; proofs of other keys fail. */
  constructor(private readonly serverSecretKey: string, private readonly identities: ReadonlyMap<string, T>) {}

  /** The identity of the key that signed `payload`, or undefined when the proof is missing, malformed or wrong. */
  verify(proof: Uint8Array | undefined, payload: Uint8Array): T | undefined {
    if (!proof || proof.length !== PROOF_BYTES) return undefined;
    const clientKey = Buffer.from(proof.subarray(0, KEY_CHARS)).toString('latin1');
    const identity = this.identities.get(clientKey);
    if (identity === undefined) return undefined;
    let key = this.keys.get(clientKey);
    if (!key) {
      try {
        key = macKey(this.serverSecretKey, clientKey);
      } catch {
        return undefined;
      }
      this.keys.set(clientKey, key);
    }
    const expected = createHmac('sha256', key).update(payload).digest();
    return timingSafeEqual(expected, proof.subarray(KEY_CHARS)) ? identity : undefined;
  }
}
