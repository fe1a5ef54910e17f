//! jsonwebtoken's crypto provider for the one algorithm we use, HS256, over
//! `ring` (already in the build for TLS). jsonwebtoken 10+ ships providers
//! only as RustCrypto's RSA/ECDSA/EdDSA stack or a C build (aws-lc); we need
//! neither. Any other algorithm is refused, so a token with `alg` other than
//! HS256 can never be signed or verified here (the `Validation` refuses it
//! first anyway).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::hmac;

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    // JWKs (public-key sets) are not used: HS256 keys are never published.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs the provider for this process; idempotent. If another provider
/// was installed first (an embedding app), that one is used.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}

struct Hs256(hmac::Key);

fn hs256_key(algorithm: &Algorithm, family: AlgorithmFamily, secret: &[u8]) -> Result<Hs256> {
    if *algorithm != Algorithm::HS256 || family != AlgorithmFamily::Hmac {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Hs256(hmac::Key::new(hmac::HMAC_SHA256, secret)))
}

fn signer_factory(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Ok(Box::new(hs256_key(
        algorithm,
        key.family(),
        key.as_bytes(),
    )?))
}

fn verifier_factory(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    Ok(Box::new(hs256_key(
        algorithm,
        key.family(),
        key.try_get_as_bytes()?,
    )?))
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        Ok(hmac::sign(&self.0, msg).as_ref().to_vec())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    /// Constant time (ring compares the tags without early exit).
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        hmac::verify(&self.0, msg, signature).map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (HMAC-SHA-256 of "what do ya want for nothing?"
    /// under the key "Jefe"): the provider computes standard HS256.
    #[test]
    fn signs_rfc_4231_vector_and_refuses_other_algorithms() {
        let key = EncodingKey::from_secret(b"Jefe").unwrap();
        let signer = signer_factory(&Algorithm::HS256, &key).unwrap();
        let tag = signer.try_sign(b"what do ya want for nothing?").unwrap();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let verifier = verifier_factory(
            &Algorithm::HS256,
            &DecodingKey::from_secret(b"Jefe").unwrap(),
        )
        .unwrap();
        assert!(verifier
            .verify(b"what do ya want for nothing?", &tag)
            .is_ok());
        assert!(verifier
            .verify(b"what do ya want for nothing!", &tag)
            .is_err());
        for other in [Algorithm::HS384, Algorithm::HS512, Algorithm::RS256] {
            assert!(signer_factory(&other, &key).is_err(), "{other:?}");
        }
    }
}
