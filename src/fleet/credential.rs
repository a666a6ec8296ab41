//! Fleet credentials: short-lived tokens the registry signs and workers
//! verify with its public key alone.
//!
//! The format is [PASETO] `v4.public` (Ed25519 over the token's JSON
//! claims, no footer, no implicit assertion), made and checked with the
//! `pasetors` crate, so any PASETO v4 library can verify a capactor token
//! given the registry's 32-byte public key. The claims:
//!
//! | claim | meaning |
//! |---|---|
//! | `sub` | who the token was issued to (`capactor token --subject`) |
//! | `iss` | `capactor-registry` |
//! | `iat`, `nbf`, `exp` | issued at, not before, expires (RFC 3339) |
//! | `workers` | optional: the names of the workers it is good at; absent means every worker |
//!
//! [PASETO]: https://github.com/paseto-standard/paseto-spec

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use pasetors::claims::{Claims, ClaimsValidationRules};
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::token::UntrustedToken;
use pasetors::version4::V4;
use pasetors::{public, Public};

use crate::{Error, Result};

/// The issuer claim of every capactor token.
const ISSUER: &str = "capactor-registry";
/// The claim listing the workers a token is good at.
const WORKERS_CLAIM: &str = "workers";
/// What `Registry.publicKey` names the algorithm.
pub const ALGORITHM: &str = "paseto-v4-public";
/// The longest token accepted at a gate (tokens are short: a few hundred bytes).
const MAX_TOKEN_BYTES: usize = 4096;

/// The registry's signing key: an Ed25519 key pair.
///
/// `Debug` shows the public key only.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use capactor::fleet::{TokenSigner, Trust};
///
/// let signer = TokenSigner::generate().unwrap();
/// let token = signer.issue("ci", Duration::from_secs(3600), &["w1".into()]).unwrap();
/// let at_w1 = Trust::new(signer.public_key(), "w1");
/// let at_w2 = Trust::new(signer.public_key(), "w2");
/// assert_eq!(at_w1.verify(token.token.as_bytes()).unwrap(), "ci");
/// assert!(at_w2.verify(token.token.as_bytes()).is_err());
/// ```
pub struct TokenSigner {
    secret: AsymmetricSecretKey<V4>,
    public: PublicKey,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A token just issued.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The token, `v4.public.` and base64url.
    pub token: String,
    /// When it stops being accepted.
    pub expires_at: SystemTime,
}

impl TokenSigner {
    /// A fresh key pair from the OS's random source.
    ///
    /// # Errors
    ///
    /// Fails if the OS gives no randomness.
    pub fn generate() -> Result<Self> {
        let pair = AsymmetricKeyPair::<V4>::generate()
            .map_err(|e| Error::invalid(format!("cannot generate a signing key: {e}")))?;
        Self::from_secret(pair.secret)
    }

    fn from_secret(secret: AsymmetricSecretKey<V4>) -> Result<Self> {
        let public = AsymmetricPublicKey::<V4>::try_from(&secret)
            .map_err(|_| Error::invalid("not an Ed25519 secret key"))?;
        Ok(TokenSigner {
            secret,
            public: PublicKey(public),
        })
    }

    /// The key kept in `path` (128 hex digits: the Ed25519 secret key, seed then public key), created
    /// there (mode 0600) if the file does not exist, so tokens stay valid
    /// across restarts of the registry.
    ///
    /// # Errors
    ///
    /// Fails if the file cannot be read or written, or holds no key.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let failed = |what: &str, e: std::io::Error| {
            Error::invalid(format!("cannot {what} key file {}: {e}", path.display()))
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let secret = unhex(text.trim())
                    .filter(|s| s.len() == 64)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "key file {} does not hold 128 hex digits",
                            path.display()
                        ))
                    })?;
                Self::from_secret_bytes(&secret)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let signer = Self::generate()?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| failed("create", e))?;
                writeln!(f, "{}", hex(signer.secret.as_bytes())).map_err(|e| failed("write", e))?;
                Ok(signer)
            }
            Err(e) => Err(failed("read", e)),
        }
    }

    /// The key pair of Ed25519's 64-byte secret key (seed, then public key).
    ///
    /// # Errors
    ///
    /// Fails unless `bytes` is such a key.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 64 || bytes[..32].iter().all(|&b| b == 0) {
            return Err(Error::invalid(
                "an Ed25519 secret key is 64 bytes (seed, then public key), its seed not all zero",
            ));
        }
        let secret = AsymmetricSecretKey::<V4>::from(bytes)
            .map_err(|_| Error::invalid("not an Ed25519 secret key"))?;
        Self::from_secret(secret)
    }

    /// The public key workers verify this signer's tokens with.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// Signs a token for `subject`, good for `ttl` from now at the workers
    /// named in `audience` (at every worker if it is empty).
    ///
    /// # Errors
    ///
    /// Fails for an empty subject or worker name, or one over 255 bytes.
    pub fn issue(&self, subject: &str, ttl: Duration, audience: &[String]) -> Result<IssuedToken> {
        check_name("subject", subject)?;
        for name in audience {
            check_name("audience worker name", name)?;
        }
        let bad = |e: pasetors::errors::Error| Error::invalid(format!("cannot issue a token: {e}"));
        let mut claims = Claims::new_expires_in(&ttl).map_err(bad)?;
        claims.subject(subject).map_err(bad)?;
        claims.issuer(ISSUER).map_err(bad)?;
        if !audience.is_empty() {
            claims
                .add_additional(WORKERS_CLAIM, audience.to_vec())
                .map_err(bad)?;
        }
        let token = public::sign(&self.secret, &claims, None, None).map_err(bad)?;
        Ok(IssuedToken {
            token,
            expires_at: SystemTime::now() + ttl,
        })
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "a token's {what} must be 1 to 255 bytes without control characters"
        )));
    }
    Ok(())
}

/// A registry's Ed25519 public key: what a worker needs to accept the
/// registry's tokens.
///
/// # Examples
///
/// ```
/// use capactor::fleet::{PublicKey, TokenSigner};
///
/// let key = TokenSigner::generate().unwrap().public_key();
/// let again = PublicKey::from_hex(&key.to_hex()).unwrap();
/// assert_eq!(key, again);
/// ```
#[derive(Clone)]
pub struct PublicKey(AsymmetricPublicKey<V4>);

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes() == other.0.as_bytes()
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl PublicKey {
    /// The key of 32 raw bytes.
    ///
    /// # Errors
    ///
    /// Fails unless `bytes` is 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            return Err(Error::invalid(format!(
                "an Ed25519 public key is 32 bytes, not {}",
                bytes.len()
            )));
        }
        AsymmetricPublicKey::<V4>::from(bytes)
            .map(PublicKey)
            .map_err(|_| Error::invalid("not an Ed25519 public key"))
    }

    /// The key written as 64 hex digits.
    ///
    /// # Errors
    ///
    /// Fails for anything else.
    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes = unhex(text.trim())
            .ok_or_else(|| Error::invalid("a public key is written as 64 hex digits"))?;
        Self::from_bytes(&bytes)
    }

    /// The key in a file of 64 hex digits (`capactor registry
    /// --public-key-file` writes one).
    ///
    /// # Errors
    ///
    /// Fails if the file cannot be read or holds no key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!(
                "cannot read public key file {}: {e}",
                path.display()
            ))
        })?;
        Self::from_hex(&text).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex(self.0.as_bytes())
    }
}

/// What a worker's gate accepts besides its static token: tokens signed
/// by the key of [`Trust::new`] that have not expired and are good at
/// this worker (no `workers` claim, or one naming it).
///
/// Set it as [`ServeOptions::trust`](crate::ServeOptions::trust).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use capactor::fleet::{TokenSigner, Trust};
///
/// let signer = TokenSigner::generate().unwrap();
/// let mut opts = capactor::ServeOptions::default();
/// opts.trust = Some(Trust::new(signer.public_key(), "w1"));
/// let token = signer.issue("me", Duration::from_secs(60), &[]).unwrap();
/// assert!(opts.trust.as_ref().unwrap().verify(token.token.as_bytes()).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct Trust {
    key: PublicKey,
    name: String,
}

impl Trust {
    /// Accept tokens signed with `key` at the worker called `name`.
    pub fn new(key: PublicKey, name: impl Into<String>) -> Self {
        Trust {
            key,
            name: name.into(),
        }
    }

    /// The key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// Checks `token`; returns its subject.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthorized`] for a forged, malformed, expired or
    /// not-yet-valid token, or one for other workers: nothing more is said
    /// to the caller (the reason is logged at debug level).
    pub fn verify(&self, token: &[u8]) -> Result<String> {
        self.check(token).map_err(|why| {
            tracing::debug!("signed token refused: {why}");
            Error::Unauthorized
        })
    }

    fn check(&self, token: &[u8]) -> std::result::Result<String, String> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(format!("{} bytes long", token.len()));
        }
        let text = std::str::from_utf8(token).map_err(|_| "not UTF-8".to_string())?;
        let untrusted =
            UntrustedToken::<Public, V4>::try_from(text).map_err(|e| format!("malformed: {e}"))?;
        let mut rules = ClaimsValidationRules::new();
        rules.validate_issuer_with(ISSUER);
        let trusted = public::verify(&self.key.0, &untrusted, &rules, None, None)
            .map_err(|e| format!("verification: {e}"))?;
        let claims = trusted
            .payload_claims()
            .ok_or_else(|| "no claims".to_string())?;
        if let Some(workers) = claims.get_claim(WORKERS_CLAIM) {
            let listed = workers
                .as_array()
                .ok_or_else(|| "workers claim is not a list".to_string())?
                .iter()
                .any(|w| w.as_str() == Some(self.name.as_str()));
            if !listed {
                return Err(format!("not good at worker {:?}", self.name));
            }
        }
        let subject = claims
            .get_claim("sub")
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        Ok(subject.to_string())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_forged_and_foreign_tokens_are_refused() {
        let signer = TokenSigner::generate().unwrap();
        let other = TokenSigner::generate().unwrap();
        let trust = Trust::new(signer.public_key(), "w1");
        let good = signer.issue("s", Duration::from_secs(60), &[]).unwrap();
        assert_eq!(trust.verify(good.token.as_bytes()).unwrap(), "s");
        let forged = other.issue("s", Duration::from_secs(60), &[]).unwrap();
        assert!(matches!(
            trust.verify(forged.token.as_bytes()),
            Err(Error::Unauthorized)
        ));
        let expired = signer.issue("s", Duration::ZERO, &[]).unwrap();
        assert!(matches!(
            trust.verify(expired.token.as_bytes()),
            Err(Error::Unauthorized)
        ));
        let elsewhere = signer
            .issue("s", Duration::from_secs(60), &["w2".into()])
            .unwrap();
        assert!(matches!(
            trust.verify(elsewhere.token.as_bytes()),
            Err(Error::Unauthorized)
        ));
        let mut tampered = good.token.into_bytes();
        let n = tampered.len();
        tampered[n - 5] ^= 1;
        assert!(matches!(trust.verify(&tampered), Err(Error::Unauthorized)));
        assert!(matches!(
            trust.verify(b"static-token"),
            Err(Error::Unauthorized)
        ));
    }

    #[test]
    fn a_seed_file_gives_the_same_key_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let a = TokenSigner::load_or_create(&path).unwrap();
        let b = TokenSigner::load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }
}
