//! The `[auth]` section of the configuration.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub password: PasswordSettings,
    /// A dashboard session ends after this long without a request...
    pub session_idle_minutes: u64,
    /// ...and after this long in any case.
    pub session_max_hours: u64,
    pub sign_in: SignInSettings,
    /// Invitation links expire after this long.
    pub invitation_hours: u64,
    /// Single sign-on with the group's identity provider. Absent: passwords only.
    pub oidc: Option<OidcSettings>,
}

/// argon2id parameters (OWASP's minimum by default). Stored hashes keep the parameters they were
/// made with, so raising them later affects only new passwords.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    pub min_length: usize,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// Brute-force protection. Per account (by sign-in name, known or not): the first
/// `free_failures` failures cost nothing; each further one makes the next attempt wait
/// `base_delay_ms`, doubling up to `max_delay_ms`; `lock_after_failures` locks the account for
/// `lock_minutes`. Per client address: `ip_failures_per_window` failures per `ip_window_seconds`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignInSettings {
    pub free_failures: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub lock_after_failures: u32,
    pub lock_minutes: u64,
    pub ip_failures_per_window: u32,
    pub ip_window_seconds: u64,
}

/// An OpenID Connect provider whose ID tokens sign people in (e.g. Firebase Auth: issuer
/// `https://securetoken.google.com/<project>`, audience `<project>`, JWKS
/// `https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    /// Keys are refetched after this long, or at once when a token names an unknown key.
    #[serde(default = "default_jwks_cache_seconds")]
    pub jwks_cache_seconds: u64,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`.
    #[serde(default = "default_leeway_seconds")]
    pub leeway_seconds: u64,
}

fn default_jwks_cache_seconds() -> u64 {
    3600
}
fn default_leeway_seconds() -> u64 {
    60
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            password: PasswordSettings {
                min_length: 12,
                memory_kib: 19 * 1024,
                iterations: 2,
                parallelism: 1,
            },
            session_idle_minutes: 12 * 60,
            session_max_hours: 7 * 24,
            sign_in: SignInSettings {
                free_failures: 3,
                base_delay_ms: 1_000,
                max_delay_ms: 60_000,
                lock_after_failures: 10,
                lock_minutes: 15,
                ip_failures_per_window: 30,
                ip_window_seconds: 15 * 60,
            },
            invitation_hours: 72,
            oidc: None,
        }
    }
}

impl AuthSettings {
    /// Adds this section's problems to `errors`, each naming its setting.
    pub fn validate(&self, errors: &mut Vec<String>) {
        let p = &self.password;
        if !(8..=64).contains(&p.min_length) {
            errors.push("auth.password.min_length: must be 8-64".into());
        }
        if p.memory_kib < 8 * p.parallelism.max(1) || p.iterations == 0 || p.parallelism == 0 {
            errors.push(
                "auth.password: memory_kib must be at least 8 × parallelism, iterations and parallelism at least 1".into(),
            );
        }
        if self.session_idle_minutes == 0 || self.session_max_hours == 0 {
            errors.push(
                "auth.session_idle_minutes, auth.session_max_hours: must be at least 1".into(),
            );
        }
        let s = &self.sign_in;
        if s.lock_after_failures <= s.free_failures {
            errors.push("auth.sign_in.lock_after_failures: must exceed free_failures".into());
        }
        if s.base_delay_ms > s.max_delay_ms {
            errors.push("auth.sign_in.base_delay_ms: must not exceed max_delay_ms".into());
        }
        if s.ip_failures_per_window == 0 || s.ip_window_seconds == 0 {
            errors.push(
                "auth.sign_in.ip_failures_per_window, ip_window_seconds: must be at least 1".into(),
            );
        }
        if self.invitation_hours == 0 {
            errors.push("auth.invitation_hours: must be at least 1".into());
        }
        if let Some(o) = &self.oidc {
            if !o.issuer.starts_with("https://") && !o.issuer.starts_with("http://") {
                errors.push(format!("auth.oidc.issuer: {:?} must be a URL", o.issuer));
            }
            if o.audience.trim().is_empty() {
                errors.push("auth.oidc.audience: must not be empty".into());
            }
            if !o.jwks_url.starts_with("https://") && !o.jwks_url.starts_with("http://") {
                errors.push(format!(
                    "auth.oidc.jwks_url: {:?} must be a URL",
                    o.jwks_url
                ));
            }
        }
    }
}
