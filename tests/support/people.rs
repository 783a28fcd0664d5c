//! People helpers for integration tests: users, sign-in, API keys, and requests made with any
//! kind of credentials (bearer token, session cookie with its CSRF token, nothing).

use reqwest::Method;
use serde_json::{json, Value};

use super::TestApp;

pub const PASSWORD: &str = "correct horse battery staple";

/// Credentials a request is made with.
#[derive(Debug, Clone)]
pub enum Cred {
    None,
    Bearer(String),
    /// A dashboard session: the cookie's token and the CSRF token the sign-in returned.
    Session {
        token: String,
        csrf: String,
    },
}

/// What a request answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// A request with `cred`; session requests carry the CSRF token unless `csrf` is false.
    pub async fn call_with(
        &self,
        cred: &Cred,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        match cred {
            Cred::None => {}
            Cred::Bearer(t) => req = req.bearer_auth(t),
            Cred::Session { token, csrf: c } => {
                req = req.header(
                    "cookie",
                    format!("__Host-wacrm_session={token}; theme=dark"),
                );
                if csrf {
                    req = req.header("x-csrf-token", c);
                }
            }
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            body,
            headers,
        }
    }

    pub async fn call(
        &self,
        cred: &Cred,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        self.call_with(cred, method, path, body, true).await
    }

    pub fn operator(&self) -> Cred {
        Cred::Bearer(self.token.clone())
    }

    pub fn people(&self) -> &wacrm::people::PeopleState {
        &self.running.as_ref().unwrap().state.people
    }

    /// Creates a user with [`PASSWORD`] (as the operator); returns the user's id.
    pub async fn create_user(
        &self,
        tenant: &str,
        email: &str,
        role: &str,
        outlets: &[&str],
    ) -> String {
        let a = self
            .call(
                &self.operator(),
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/users"),
                Some(json!({"email": email, "name": email, "role": role, "outlets": outlets, "password": PASSWORD})),
            )
            .await;
        assert_eq!(a.status, 201, "create user {email}: {:?}", a.body);
        a.body["user"]["id"].as_str().unwrap().to_string()
    }

    /// Signs in; returns the raw answer.
    pub async fn sign_in_raw(&self, email: &str, password: &str) -> Answer {
        self.call(
            &Cred::None,
            Method::POST,
            "/api/v1/auth/sign-in",
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    /// Signs in with [`PASSWORD`]; returns the session credentials.
    pub async fn sign_in(&self, email: &str) -> Cred {
        let a = self.sign_in_raw(email, PASSWORD).await;
        assert_eq!(a.status, 200, "sign in {email}: {:?}", a.body);
        session_of(&a)
    }

    /// Creates an API key (as the operator); returns its id and secret.
    pub async fn create_api_key(
        &self,
        tenant: &str,
        role: &str,
        outlets: &[&str],
    ) -> (String, String) {
        let a = self
            .call(
                &self.operator(),
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/api-keys"),
                Some(json!({"name": format!("{role} key"), "role": role, "outlets": outlets})),
            )
            .await;
        assert_eq!(a.status, 201, "create key: {:?}", a.body);
        (
            a.body["api_key"]["id"].as_str().unwrap().to_string(),
            a.body["secret"].as_str().unwrap().to_string(),
        )
    }

    pub async fn create_outlet(&self, tenant: &str, name: &str) -> String {
        let v = self
            .post(
                &format!("/api/v1/tenants/{tenant}/outlets"),
                json!({"name": name}),
            )
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    /// The audit log as the operator sees it, newest first.
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let v = self.get(&format!("/api/v1/audit?{query}")).await;
        v.as_array().unwrap().clone()
    }
}

/// The session of a sign-in answer (its Set-Cookie and CSRF token), checking the cookie's flags.
pub fn session_of(a: &Answer) -> Cred {
    let cookie = a
        .headers
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_string();
    let token = cookie
        .strip_prefix("__Host-wacrm_session=")
        .and_then(|rest| rest.split(';').next())
        .expect("the session cookie")
        .to_string();
    Cred::Session {
        token,
        csrf: a.body["csrf_token"].as_str().unwrap().to_string(),
    }
}
