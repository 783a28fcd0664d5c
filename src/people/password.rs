//! Passwords: argon2id hashes (PHC strings) and the length rules. Following NIST SP 800-63B: a
//! minimum length, a generous maximum, no composition rules, and a refusal of the most common
//! choices and of the sign-in name itself.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::settings::PasswordSettings;
use super::PeopleError;

/// Longer passwords are refused: hashing cost must not be an attacker's lever.
pub const MAX_LENGTH: usize = 256;

const COMMON: &[&str] = &[
    "password",
    "password1",
    "password123",
    "123456789012",
    "qwertyuiop",
    "iloveyou",
    "letmein",
    "welcome",
    "admin",
    "administrator",
    "changeme",
    "passw0rd",
    "1q2w3e4r5t6y",
    "qwerty123456",
    "abc123456789",
];

#[derive(Clone)]
pub struct Hasher {
    argon: Argon2<'static>,
    min_length: usize,
    /// A hash of a random password, verified against when the sign-in name is unknown so that a
    /// wrong name costs as much time as a wrong password (no account enumeration by timing).
    dummy: String,
}

impl Hasher {
    pub fn new(settings: &PasswordSettings) -> Result<Self, PeopleError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| PeopleError::Hash(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut hasher = Self {
            argon,
            min_length: settings.min_length,
            dummy: String::new(),
        };
        hasher.dummy = hasher.hash_unchecked(&super::secret::new_token("dummy"))?;
        Ok(hasher)
    }

    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// Checks the rules; `email` is the account's sign-in name.
    pub fn validate(&self, password: &str, email: &str) -> Result<(), PeopleError> {
        let len = password.chars().count();
        if len < self.min_length {
            return Err(PeopleError::invalid(
                "password",
                format!("must be at least {} characters", self.min_length),
            ));
        }
        if len > MAX_LENGTH {
            return Err(PeopleError::invalid(
                "password",
                format!("must be at most {MAX_LENGTH} characters"),
            ));
        }
        let lower = password.to_lowercase();
        let local = email.split('@').next().unwrap_or("");
        if COMMON.contains(&lower.as_str())
            || lower == email
            || (!local.is_empty() && lower == local)
            || password.chars().all(|c| password.starts_with(c))
        {
            return Err(PeopleError::invalid(
                "password",
                "is too easy to guess (a common password, the email address, or one repeated character)",
            ));
        }
        Ok(())
    }

    /// Validates and hashes a new password.
    pub fn hash(&self, password: &str, email: &str) -> Result<String, PeopleError> {
        self.validate(password, email)?;
        self.hash_unchecked(password)
    }

    fn hash_unchecked(&self, password: &str) -> Result<String, PeopleError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PeopleError::Hash(e.to_string()))
    }

    /// Whether `password` matches `hash` (a PHC string; its own parameters are used). `None`
    /// verifies against a dummy hash and returns false, taking the same time.
    pub fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => (self.dummy.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        if password.chars().count() > MAX_LENGTH {
            return false;
        }
        let ok = self
            .argon
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && real
    }

    /// Runs the hash in a blocking thread (argon2 takes tens of milliseconds by design).
    pub async fn hash_blocking(
        &self,
        password: String,
        email: String,
    ) -> Result<String, PeopleError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.hash(&password, &email))
            .await
            .map_err(|e| PeopleError::Hash(e.to_string()))?
    }

    pub async fn verify_blocking(&self, password: String, hash: Option<String>) -> bool {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.verify(&password, hash.as_deref()))
            .await
            .unwrap_or(false)
    }
}

/// A random password for accounts created without one (printed once).
pub fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> Hasher {
        Hasher::new(&PasswordSettings {
            min_length: 12,
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[test]
    fn argon2id_hashes_verify_and_keep_their_parameters() {
        let h = hasher();
        let hash = h.hash("correct horse battery", "a@b.c").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(h.verify("correct horse battery", Some(&hash)));
        assert!(!h.verify("correct horse batterY", Some(&hash)));
        assert!(!h.verify("correct horse battery", None));
        assert!(!h.verify("x", Some("not a phc string")));
    }

    #[test]
    fn length_and_guessability_rules() {
        let h = hasher();
        let code = |p: &str| h.validate(p, "budi@example.com").map_err(|e| e.to_string());
        assert!(code("short").unwrap_err().contains("at least 12"));
        assert!(code(&"x".repeat(300)).unwrap_err().contains("at most"));
        assert!(code("aaaaaaaaaaaaaa").is_err());
        assert!(code("Password123").is_err() || code("password123").is_err());
        assert!(code("budi@example.com").is_err());
        assert!(code("ünïcödé pässwörd").is_ok());
        // Length counts characters, not bytes: 12 multibyte characters are enough.
        assert!(code("ééééééééééép").is_ok());
    }

    #[test]
    fn generated_passwords_pass_the_rules() {
        let h = hasher();
        for _ in 0..20 {
            h.validate(&generate(), "a@b.c").unwrap();
        }
    }
}
