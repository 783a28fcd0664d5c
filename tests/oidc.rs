//! Single sign-on with OIDC ID tokens, against a local identity provider: RSA keys generated in
//! the test, a JWKS served on 127.0.0.1, tokens signed as the provider would sign them.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use support::people::Cred;
use support::*;
use wacrm::people::OidcSettings;

const ISSUER: &str = "https://idp.example.test/group";
const AUDIENCE: &str = "wacrm-test";

struct Key {
    kid: String,
    private: rsa::RsaPrivateKey,
}

impl Key {
    fn new(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            private: rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap(),
        }
    }
    fn jwk(&self) -> Value {
        let public = self.private.to_public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": B64URL.encode(public.n().to_bytes_be()),
            "e": B64URL.encode(public.e().to_bytes_be()),
        })
    }
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let der = self.private.to_pkcs1_der().unwrap();
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(der.as_bytes())).unwrap()
    }
}

/// The provider's JWKS endpoint; what it publishes can change during the test.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve_jwks(keys: Value) -> Jwks {
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (k, f) = (keys.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (k, f) = (k.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(k.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks { url, keys, fetches }
}

fn claims(sub: &str, email: &str, verified: bool) -> Value {
    let now = jiff::Timestamp::now().as_second();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "email": email, "email_verified": verified,
        "iat": now, "exp": now + 3600, "auth_time": now,
    })
}

async fn sign_in(app: &TestApp, token: &str) -> support::people::Answer {
    app.call(
        &Cred::None,
        Method::POST,
        "/api/v1/auth/oidc",
        Some(json!({"id_token": token})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_are_verified_against_the_jwks_and_mapped_to_tenant_users() {
    let k1 = Key::new("k1");
    let jwks = serve_jwks(json!({"keys": [k1.jwk()]})).await;
    let url = jwks.url.clone();
    let mut app = TestApp::start(Options {
        tweak: Box::new(move |c| {
            c.auth.oidc = Some(OidcSettings {
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                jwks_url: url,
                jwks_cache_seconds: 3600,
                leeway_seconds: 30,
            })
        }),
        ..Options::default()
    })
    .await;
    app.create_tenant("acme").await;
    app.create_user("acme", "siti@acme.test", "agent", &[])
        .await;

    // A good token signs the user in (first time: found by the verified email, then linked).
    let a = sign_in(
        &app,
        &k1.sign(&claims("idp-user-1", "Siti@acme.test", true)),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["principal"]["label"], "siti@acme.test");
    assert_eq!(a.body["principal"]["role"], "agent");
    let session = support::people::session_of(&a);
    assert_eq!(
        app.call(
            &session,
            Method::GET,
            "/api/v1/tenants/acme/conversations",
            None
        )
        .await
        .status,
        200
    );
    // Later sign-ins follow the link, whatever email the provider now reports.
    let a = sign_in(
        &app,
        &k1.sign(&claims("idp-user-1", "siti.new@example.test", true)),
    )
    .await;
    assert_eq!(a.body["principal"]["label"], "siti@acme.test");

    // Refused tokens.
    let refused = |why: &str, token: String| (why.to_string(), token);
    let other_key = Key::new("k1");
    let mut expired = claims("idp-user-1", "siti@acme.test", true);
    expired["exp"] = json!(jiff::Timestamp::now().as_second() - 3600);
    let mut wrong_aud = claims("idp-user-1", "siti@acme.test", true);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("idp-user-1", "siti@acme.test", true);
    wrong_iss["iss"] = json!("https://evil.example.test");
    let hmac = jsonwebtoken::encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims("idp-user-1", "siti@acme.test", true),
        &EncodingKey::from_secret(k1.jwk().to_string().as_bytes()),
    )
    .unwrap();
    let unsigned = {
        let good = k1.sign(&claims("idp-user-1", "siti@acme.test", true));
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.",
            B64URL.encode(br#"{"alg":"none","kid":"k1"}"#),
            parts[1]
        )
    };
    for (why, token) in [
        refused("expired", k1.sign(&expired)),
        refused("wrong audience", k1.sign(&wrong_aud)),
        refused("wrong issuer", k1.sign(&wrong_iss)),
        refused(
            "signed by another key",
            other_key.sign(&claims("idp-user-1", "siti@acme.test", true)),
        ),
        refused("HMAC with the public key", hmac),
        refused("unsigned", unsigned),
        refused("garbage", "not.a.token".into()),
    ] {
        let a = sign_in(&app, &token).await;
        assert_eq!(
            (a.status, a.code()),
            (401, "invalid_credentials"),
            "{why}: {:?}",
            a.body
        );
        assert!(a.headers.get("set-cookie").is_none(), "{why}");
    }

    // Verified tokens of people without an account, or with an unverified email, are refused.
    let a = sign_in(
        &app,
        &k1.sign(&claims("idp-user-2", "stranger@acme.test", true)),
    )
    .await;
    assert_eq!((a.status, a.code()), (403, "forbidden"));
    app.create_user("acme", "budi@acme.test", "viewer", &[])
        .await;
    let a = sign_in(
        &app,
        &k1.sign(&claims("idp-user-3", "budi@acme.test", false)),
    )
    .await;
    assert_eq!((a.status, a.code()), (403, "forbidden"));

    // Key rotation: a token signed by a newly published key is accepted once the JWKS is
    // refetched (at most every 10 s on unknown keys).
    let k2 = Key::new("k2");
    *jwks.keys.lock().unwrap() = json!({"keys": [k1.jwk(), k2.jwk()]});
    let before = jwks.fetches.load(Ordering::SeqCst);
    app.people().clock.advance(Duration::from_secs(11));
    let a = sign_in(
        &app,
        &k2.sign(&claims("idp-user-1", "siti@acme.test", true)),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1);
    // Unknown keys do not make every request hit the provider.
    let k3 = Key::new("k3");
    for _ in 0..3 {
        assert_eq!(
            sign_in(
                &app,
                &k3.sign(&claims("idp-user-1", "siti@acme.test", true))
            )
            .await
            .status,
            401
        );
    }
    assert!(jwks.fetches.load(Ordering::SeqCst) <= before + 2);

    // Suspended tenants' people cannot sign in this way either; all of it is audited.
    app.post("/api/v1/tenants/acme/suspend", json!({})).await;
    let a = sign_in(
        &app,
        &k1.sign(&claims("idp-user-1", "siti@acme.test", true)),
    )
    .await;
    assert_eq!((a.status, a.code()), (403, "tenant_suspended"));
    let failed = app.audit("action=auth.sign_in_failed").await;
    assert!(failed.len() >= 7, "{failed:?}");
    let methods: Vec<_> = app
        .audit("action=auth.sign_in")
        .await
        .iter()
        .filter(|e| e["action"] == "auth.sign_in")
        .map(|e| e["detail"]["method"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(methods.iter().filter(|m| *m == "oidc").count(), 3);
    app.stop().await;
}
