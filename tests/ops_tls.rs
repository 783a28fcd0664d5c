//! HTTPS served directly: certificates from files, reloaded without dropping connections, plain
//! HTTP redirected; and the doctor's view of a certificate and a data directory.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use support::*;
use wacrm::config::TlsSettings;

const HOST: &str = "wa.example.test";

fn cert(not_after_days: i64) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec![HOST.to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * not_after_days);
    let d = until.to_zoned(jiff::tz::TimeZone::UTC).date();
    params.not_after = rcgen::date_time_ymd(d.year() as i32, d.month() as u8, d.day() as u8);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Replaces a file the way certbot does: write beside it, then rename over it.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn client_trusting(pem: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve(HOST, addr)
        .pool_idle_timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_reloads_certificates_without_dropping_connections_and_redirects_http() {
    let files = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (
        files.path().join("fullchain.pem"),
        files.path().join("privkey.pem"),
    );
    let (a_cert, a_key) = cert(90);
    std::fs::write(&cert_file, &a_cert).unwrap();
    std::fs::write(&key_file, &a_key).unwrap();
    let settings = TlsSettings {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        redirect_listen: Some("127.0.0.1:0".parse().unwrap()),
        reload_check_ms: 50,
    };
    let app = TestApp::start(Options {
        status_webhooks: false,
        tweak: Box::new(move |c| c.tls = Some(settings)),
        ..Options::default()
    })
    .await;
    let running = app.running.as_ref().unwrap();
    assert!(app.url.starts_with("https://"));
    let addr = running.addr;
    let url = format!("https://{HOST}:{}/healthz", addr.port());

    let old = client_trusting(&a_cert, addr);
    assert_eq!(
        old.get(&url).send().await.unwrap().text().await.unwrap(),
        "ok"
    );
    // Plain HTTP on the HTTPS port gets no answer.
    let plain = reqwest::get(format!("http://{addr}/healthz")).await;
    assert!(!plain.map(|r| r.status().is_success()).unwrap_or(false));

    // Renewal: new files; new handshakes get the new certificate.
    let (b_cert, b_key) = cert(90);
    replace(&key_file, &b_key);
    replace(&cert_file, &b_cert);
    let new = client_trusting(&b_cert, addr);
    let mut reloaded = false;
    for _ in 0..200 {
        if new.get(&url).send().await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the new certificate was never served");
    // The connection opened before the reload is still up: a new handshake with this client would
    // fail (it trusts only the old certificate), so success means the connection survived.
    assert_eq!(old.get(&url).send().await.unwrap().status(), 200);
    assert!(client_trusting(&a_cert, addr)
        .get(&url)
        .send()
        .await
        .is_err());

    // The CLI on this machine (backup) reaches the HTTPS server on its loopback address.
    let out = tempfile::tempdir().unwrap();
    wacrm::ops::backup::backup_from_server(
        &app.url,
        &app.token,
        app.dir.path(),
        &out.path().join("b"),
    )
    .await
    .unwrap();

    // Plain HTTP redirects to the same path over HTTPS.
    let redirect = running.redirect_addr.unwrap();
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "http://{redirect}/webhooks/whatsapp?hub.mode=subscribe"
        ))
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!(
            "https://{HOST}:{}/webhooks/whatsapp?hub.mode=subscribe",
            addr.port()
        )
        .as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("master.key"), [0u8; 32]).unwrap();
    std::fs::set_permissions(
        data.join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (c, k) = cert(5);
    std::fs::write(dir.path().join("c.pem"), c).unwrap();
    std::fs::write(dir.path().join("k.pem"), k).unwrap();
    let graph = wacrm::testkit::fake_graph::FakeGraph::start(
        wacrm::testkit::fake_graph::FakeGraphOptions::new(ACCESS_TOKEN),
    )
    .await
    .unwrap();
    let config = dir.path().join("wacrm.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[graph]\nbase_url = {:?}\ntimeout_ms = 2000\nrate_per_second = 80\nrecipient_gap_ms = 0\nmax_attempts = 3\nbackoff_base_ms = 10\nbackoff_max_ms = 100\nreconcile_after_ms = 1000\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n[llm]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
            data.display().to_string(),
            graph.base_url(),
            dir.path().join("c.pem").display().to_string(),
            dir.path().join("k.pem").display().to_string(),
        ),
    )
    .unwrap();
    let findings = wacrm::ops::doctor::diagnose(Some(&config), None).await;
    let find = |check: &str, level: wacrm::ops::doctor::Level| {
        findings
            .iter()
            .find(|f| f.check == check && f.level == level)
            .map(|f| f.message.clone())
            .unwrap_or_else(|| panic!("no {level:?} {check} in {findings:#?}"))
    };
    use wacrm::ops::doctor::Level;
    assert!(find("data_dir", Level::Fail).contains("chmod 700"));
    assert!(find("key_files", Level::Fail).contains("chmod 600"));
    assert!(find("tls", Level::Warn).contains("expires in"));
    find("graph_api", Level::Ok);
    assert!(find("llm_api", Level::Fail).contains("unreachable"));
    find("config", Level::Ok);

    // The binary prints the same and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wacrm"))
        .arg("--config")
        .arg(&config)
        .arg("doctor")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL data_dir"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
