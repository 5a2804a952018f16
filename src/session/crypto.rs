//! The key ring: AES-256-GCM sealing of session records and login state, and
//! HMAC authentication of the session cookie. The first key seals and signs;
//! every key opens and verifies, so keys rotate without logging anyone out.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Format byte of a sealed blob, so the layout can change later.
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Length of the AES-GCM tag at the end of a sealed blob.
const TAG_BYTES: usize = 16;
/// Length of the cookie MAC kept (128 bits is ample for an online forgery).
pub const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed data is malformed")]
    Malformed,
    #[error("sealed with a key that is not in the key ring")]
    UnknownKey,
    #[error("sealed data failed authentication")]
    Forged,
}

struct RingKey {
    id: [u8; KEY_ID_LEN],
    aead: LessSafeKey,
    mac: HmacSha256,
}

/// Keys from `[session] keys`, first one primary.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing({} keys)", self.keys.len())
    }
}

/// Result of opening: the plaintext, and whether a key other than the primary
/// sealed it (the caller re-seals on its next write).
#[derive(Debug)]
pub struct Opened {
    pub plaintext: Vec<u8>,
    pub stale_key: bool,
}

impl KeyRing {
    /// Builds a ring; `keys` must not be empty (config validation guarantees it).
    pub fn new(keys: &[[u8; 32]]) -> Self {
        assert!(!keys.is_empty(), "a key ring needs at least one key");
        let keys = keys
            .iter()
            .map(|k| {
                let digest = Sha256::new_with_prefix(b"oidc-bff key id\0")
                    .chain_update(k)
                    .finalize();
                let mut id = [0u8; KEY_ID_LEN];
                id.copy_from_slice(&digest[..KEY_ID_LEN]);
                // Separate subkeys for the MAC and the cipher: one key, one purpose.
                let mut derive =
                    <HmacSha256 as Mac>::new_from_slice(k).expect("HMAC takes any key length");
                derive.update(b"oidc-bff cookie mac v1");
                let mac_key = derive.finalize().into_bytes();
                RingKey {
                    id,
                    aead: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).expect("32-byte key")),
                    mac: <HmacSha256 as Mac>::new_from_slice(&mac_key)
                        .expect("HMAC takes any key length"),
                }
            })
            .collect();
        KeyRing { keys }
    }

    /// Seals `plaintext`, binding it to `aad` (e.g. the record's store key, so a
    /// record cannot be moved under another id).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // AES-256-GCM (aws-lc): ciphertext followed by the 16-byte tag.
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[HEADER_LEN..],
            )
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        out.extend_from_slice(tag.as_ref());
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Opened, CryptoError> {
        if sealed.len() < HEADER_LEN + 16 || sealed[0] != VERSION {
            return Err(CryptoError::Malformed);
        }
        let id = &sealed[1..1 + KEY_ID_LEN];
        let nonce: [u8; NONCE_LEN] = sealed[1 + KEY_ID_LEN..HEADER_LEN]
            .try_into()
            .expect("header length checked");
        let (index, key) = self
            .keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.id == id)
            .ok_or(CryptoError::UnknownKey)?;
        let mut buf = sealed[HEADER_LEN..].to_vec();
        let len = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| CryptoError::Forged)?
            .len();
        buf.truncate(len);
        Ok(Opened {
            plaintext: buf,
            stale_key: index != 0,
        })
    }

    /// MAC of `data` under the primary key.
    pub fn sign(&self, data: &[u8]) -> [u8; TAG_LEN] {
        tag(&self.keys[0].mac, data)
    }

    /// MAC of `data` under every key, primary first: lets a keyed name (the
    /// session index) be found whichever key of the ring wrote it.
    pub fn sign_each(&self, data: &[u8]) -> Vec<[u8; TAG_LEN]> {
        self.keys.iter().map(|k| tag(&k.mac, data)).collect()
    }

    /// `true` when `tag` is the MAC of `data` under any key of the ring.
    pub fn verify(&self, data: &[u8], candidate: &[u8]) -> bool {
        self.verify_stale(data, candidate).is_some()
    }

    /// `Some(stale)` when `tag` is the MAC of `data` under a key of the ring;
    /// `stale` when that key is not the primary (the caller re-issues).
    pub fn verify_stale(&self, data: &[u8], candidate: &[u8]) -> Option<bool> {
        use subtle::ConstantTimeEq;
        if candidate.len() != TAG_LEN {
            return None;
        }
        self.keys
            .iter()
            .position(|k| bool::from(tag(&k.mac, data).ct_eq(candidate)))
            .map(|i| i != 0)
    }
}

fn tag(mac: &HmacSha256, data: &[u8]) -> [u8; TAG_LEN] {
    let mut m = mac.clone();
    m.update(data);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// A fresh random 32-byte key, base64url without padding (`oidc-bff generate-key`).
pub fn generate_key() -> String {
    use base64::Engine;
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];
    const C: [u8; 32] = [3; 32];

    #[test]
    fn seal_open_round_trip_and_rotation() {
        struct Case {
            name: &'static str,
            sealer: Vec<[u8; 32]>,
            opener: Vec<[u8; 32]>,
            expect: Result<bool, CryptoError>, // Ok(stale_key)
        }
        let cases = [
            Case {
                name: "same single key",
                sealer: vec![A],
                opener: vec![A],
                expect: Ok(false),
            },
            Case {
                name: "old key after rotation opens, marked stale",
                sealer: vec![A],
                opener: vec![B, A],
                expect: Ok(true),
            },
            Case {
                name: "new primary opens fresh",
                sealer: vec![B, A],
                opener: vec![B, A],
                expect: Ok(false),
            },
            Case {
                name: "removed key cannot open",
                sealer: vec![A],
                opener: vec![B, C],
                expect: Err(CryptoError::UnknownKey),
            },
            Case {
                name: "secondary only still opens",
                sealer: vec![C],
                opener: vec![A, B, C],
                expect: Ok(true),
            },
        ];
        for case in cases {
            let sealed = KeyRing::new(&case.sealer).seal(b"payload", b"aad");
            let got = KeyRing::new(&case.opener).open(&sealed, b"aad");
            match (&case.expect, got) {
                (Ok(stale), Ok(o)) => {
                    assert_eq!(o.plaintext, b"payload", "{}", case.name);
                    assert_eq!(o.stale_key, *stale, "{}", case.name);
                }
                (Err(e), Err(g)) => assert_eq!(*e, g, "{}", case.name),
                (e, g) => panic!("{}: expected {e:?}, got {g:?}", case.name),
            }
        }
    }

    #[test]
    fn tampering_is_detected() {
        let ring = KeyRing::new(&[A]);
        let sealed = ring.seal(b"secret token", b"id-1");
        assert!(
            !sealed.windows(12).any(|w| w == b"secret token"),
            "plaintext visible"
        );
        assert_eq!(
            ring.open(&sealed, b"id-2").unwrap_err(),
            CryptoError::Forged,
            "wrong aad"
        );
        for i in [0, 3, HEADER_LEN + 2, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[i] ^= 0x40;
            assert!(ring.open(&t, b"id-1").is_err(), "flip at {i}");
        }
        assert_eq!(
            ring.open(&sealed[..10], b"id-1").unwrap_err(),
            CryptoError::Malformed
        );
        assert_eq!(ring.open(&[], b"id-1").unwrap_err(), CryptoError::Malformed);
    }

    #[test]
    fn cookie_mac_verifies_with_any_ring_key() {
        let old = KeyRing::new(&[A]);
        let rotated = KeyRing::new(&[B, A]);
        let removed = KeyRing::new(&[B]);
        let t = old.sign(b"session-id");
        assert!(old.verify(b"session-id", &t));
        assert!(rotated.verify(b"session-id", &t));
        assert!(!removed.verify(b"session-id", &t));
        assert!(!old.verify(b"other-id", &t));
        assert!(!old.verify(b"session-id", &t[..8]));
    }

    #[test]
    fn generated_keys_decode_to_32_bytes() {
        let k = generate_key();
        assert_eq!(crate::config::decode_key(&k).map(|b| b.len()), Some(32));
        assert_ne!(k, generate_key());
    }
}
