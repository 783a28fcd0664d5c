//! install.sh and the systemd units: verified by systemd, idempotent in a scratch root, removable
//! without losing data, and the installed service started exactly as its unit says serves traffic.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::ops::poll_until;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs install.sh into the scratch root `root` with the built binary; `env` adds to (or
/// overrides) the defaults: no models, listen on port 0. Returns whether it succeeded and its output.
fn run_install(root: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("install.sh"))
        .args(args)
        .env("WACRM_INSTALL_ROOT", root)
        .env("WACRM_BIN", env!("CARGO_BIN_EXE_wacrm"))
        .env("WACRM_SKIP_MODELS", "1")
        .env("WACRM_LISTEN", "127.0.0.1:0")
        .env_remove("WACRM_OPERATOR_EMAIL")
        .env_remove("WACRM_OPERATOR_PASSWORD")
        .env_remove("WACRM_MODELS_SRC");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn install_with(root: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let (ok, text) = run_install(root, args, env);
    assert!(ok, "install.sh {args:?} failed:\n{text}");
    text
}

fn install(root: &Path, args: &[&str]) -> String {
    install_with(root, args, &[])
}

/// A models directory as scripts/fetch-models.sh leaves it (small stand-in files, a real
/// MANIFEST of their hashes, and the download cache that must not be installed).
fn fake_models(dir: &Path) {
    use sha2::{Digest, Sha256};
    let files = [
        ("libonnxruntime.so.1.32.0", "runtime"),
        ("multilingual-e5-small/model.onnx", "weights"),
        ("multilingual-e5-small/tokenizer.json", "{}"),
        (
            "multilingual-e5-small/config.json",
            "{\"hidden_size\": 384}",
        ),
    ];
    let mut manifest = String::from("# wacrm local embedding models\n# dimension: 384\n");
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        manifest.push_str(&format!(
            "{}  {name}\n",
            hex::encode(Sha256::digest(body.as_bytes()))
        ));
    }
    std::fs::write(dir.join("MANIFEST"), manifest).unwrap();
    std::fs::create_dir_all(dir.join(".build/wheels")).unwrap();
    std::fs::write(dir.join(".build/wheels/big.whl"), "cache").unwrap();
}

/// The operator accounts of an installed data directory, as `wacrm operator list` prints them.
fn operators(root: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(root.join("opt/wacrm/wacrm"))
        .arg("--data-dir")
        .arg(root.join("var/lib/wacrm"))
        .args(["operator", "list"])
        .env("WACRM_CONFIG", root.join("etc/wacrm/wacrm.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

/// Every path under `root` with its type, mode and content hash.
fn tree(root: &Path) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.is_dir() {
                stack.push(path);
                format!("dir {mode:o}")
            } else if meta.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else {
                let hash = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                format!("file {mode:o} {hash}")
            };
            out.insert(rel, what);
        }
    }
    out
}

#[test]
fn systemd_accepts_the_units() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed here: unit verification skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for unit in [
        "wacrm.service",
        "wacrm-backup.service",
        "wacrm-backup.timer",
    ] {
        // The installed binary path must exist for systemd-analyze: point it at the built one.
        let text = std::fs::read_to_string(repo().join("deploy").join(unit))
            .unwrap()
            .replace("/opt/wacrm/wacrm", env!("CARGO_BIN_EXE_wacrm"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    for unit in [
        "wacrm.service",
        "wacrm-backup.service",
        "wacrm-backup.timer",
    ] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.path().join(unit))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{unit}: {stderr}");
        // systemd-analyze exits 0 on some problems it only prints about this unit.
        assert!(!stderr.contains(unit), "{unit}: {stderr}");
    }
}

#[test]
fn install_twice_gives_the_same_tree_and_uninstall_keeps_data_unless_purged() {
    let root = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    fake_models(models.path());
    let models_src = models.path().display().to_string();
    let env = [
        ("WACRM_SKIP_MODELS", "0"),
        ("WACRM_MODELS_SRC", models_src.as_str()),
        ("WACRM_OPERATOR_EMAIL", "ops@example.test"),
        ("WACRM_OPERATOR_PASSWORD", "correct horse battery staple"),
    ];
    let out = install_with(root.path(), &[], &env);
    assert!(
        out.contains("operator account created: ops@example.test"),
        "{out}"
    );
    assert!(
        !out.contains("correct horse"),
        "the password was printed: {out}"
    );
    let first = tree(root.path());
    for path in [
        "etc/systemd/system/wacrm.service",
        "etc/systemd/system/wacrm-backup.timer",
        "opt/wacrm/wacrm",
        "etc/wacrm/wacrm.toml",
        "usr/local/bin/wacrm",
        "var/lib/wacrm/wacrm.redb",
        "var/lib/wacrm/operator.token",
    ] {
        assert!(first.contains_key(path), "{path} missing: {first:#?}");
    }
    assert_eq!(first["var/lib/wacrm"], "dir 700");
    assert!(first["etc/wacrm/env"].starts_with("file 600"));
    assert_eq!(
        std::fs::read(root.path().join("etc/systemd/system/wacrm.service")).unwrap(),
        std::fs::read(repo().join("deploy/wacrm.service")).unwrap()
    );
    // The models are where the unit tells the service to look, checked, without the download
    // cache.
    let unit =
        std::fs::read_to_string(root.path().join("etc/systemd/system/wacrm.service")).unwrap();
    let models_dir = service_settings(&unit)
        .into_iter()
        .find_map(|(k, v)| {
            (k == "Environment")
                .then(|| v.strip_prefix("WACRM_MODELS_DIR=").map(str::to_string))
                .flatten()
        })
        .expect("the unit sets WACRM_MODELS_DIR");
    let installed = root.path().join(models_dir.trim_start_matches('/'));
    assert_eq!(installed, root.path().join("opt/wacrm/models"));
    assert_eq!(
        std::fs::read(installed.join("multilingual-e5-small/model.onnx")).unwrap(),
        b"weights"
    );
    assert_eq!(
        first["opt/wacrm/models/libonnxruntime.so"],
        "link libonnxruntime.so.1.32.0"
    );
    assert!(!installed.join(".build").exists());
    let accounts = operators(root.path());
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0]["email"], "ops@example.test");

    // A second run (an upgrade in place) changes nothing: the same files, the same keys, the
    // same single operator. Only the database file's bytes differ (each start writes to it).
    let out = install_with(
        root.path(),
        &[],
        &[
            ("WACRM_SKIP_MODELS", "0"),
            ("WACRM_MODELS_SRC", models_src.as_str()),
            ("WACRM_OPERATOR_EMAIL", "second@example.test"),
        ],
    );
    assert!(out.contains("systemd not touched"), "{out}");
    assert!(out.contains("already there (ops@example.test)"), "{out}");
    assert!(!out.contains("account created"), "{out}");
    assert!(!out.contains("password (shown once"), "{out}");
    let without_db = |mut t: BTreeMap<String, String>| {
        t.remove("var/lib/wacrm/wacrm.redb");
        t
    };
    assert_eq!(
        without_db(tree(root.path())),
        without_db(first.clone()),
        "a second run changed the installation"
    );
    assert_eq!(operators(root.path()), accounts);

    // Damaged models are refused, and the installed ones stay.
    std::fs::write(
        models.path().join("multilingual-e5-small/model.onnx"),
        "tampered",
    )
    .unwrap();
    let (ok, out) = run_install(
        root.path(),
        &[],
        &[
            ("WACRM_SKIP_MODELS", "0"),
            ("WACRM_MODELS_SRC", models_src.as_str()),
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("do not match their MANIFEST"), "{out}");
    assert_eq!(
        std::fs::read(installed.join("multilingual-e5-small/model.onnx")).unwrap(),
        b"weights"
    );

    std::fs::write(root.path().join("var/lib/wacrm/keep-me"), "data").unwrap();
    let out = install(root.path(), &["--uninstall"]);
    assert!(out.contains("data is kept"), "{out}");
    assert!(!root.path().join("opt/wacrm").exists());
    assert!(!root
        .path()
        .join("etc/systemd/system/wacrm.service")
        .exists());
    assert!(root.path().join("var/lib/wacrm/keep-me").exists());
    assert!(root.path().join("etc/wacrm/wacrm.toml").exists());

    install(root.path(), &["--uninstall", "--uninstall"]);
    assert!(!root.path().join("var/lib/wacrm").exists());
    assert!(!root.path().join("etc/wacrm").exists());
}

/// Reads `Key=value` lines of the [Service] section.
fn service_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .skip_while(|l| l.trim() != "[Service]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installed_service_started_as_its_unit_says_serves_traffic() {
    let root = tempfile::tempdir().unwrap();
    // No password given: one is generated and printed once.
    let out = install(root.path(), &[]);
    let password = out
        .lines()
        .find_map(|l| {
            l.split("password (shown once; keep it in a password manager): ")
                .nth(1)
        })
        .unwrap_or_else(|| panic!("no generated password in:\n{out}"))
        .trim()
        .to_string();
    // A later run with a password set leaves the account's password alone.
    let out = install_with(
        root.path(),
        &[],
        &[("WACRM_OPERATOR_PASSWORD", "another password entirely")],
    );
    assert!(!out.contains(&password), "printed twice: {out}");
    let under = |p: &str| -> String {
        for prefix in ["/opt/wacrm", "/etc/wacrm", "/var/lib/wacrm"] {
            if let Some(rest) = p.strip_prefix(prefix) {
                return format!("{}{prefix}{rest}", root.path().display());
            }
        }
        p.to_string()
    };
    let unit =
        std::fs::read_to_string(root.path().join("etc/systemd/system/wacrm.service")).unwrap();
    let settings = service_settings(&unit);
    let exec: Vec<String> = settings
        .iter()
        .find(|(k, _)| k == "ExecStart")
        .unwrap()
        .1
        .split_whitespace()
        .map(under)
        .collect();
    // The unit's environment, then its EnvironmentFile, and nothing from this test process.
    let mut cmd = Command::new(&exec[0]);
    cmd.args(&exec[1..])
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    for (k, v) in &settings {
        if k == "Environment" {
            let (name, value) = v.split_once('=').unwrap();
            cmd.env(name, under(value));
        }
    }
    let env_file = under("/etc/wacrm/env");
    for line in std::fs::read_to_string(&env_file).unwrap().lines() {
        if let Some((k, v)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            cmd.env(k, v);
        }
    }
    let data = PathBuf::from(under("/var/lib/wacrm"));
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let server_json = data.join("server.json");
    assert!(
        poll_until(Duration::from_secs(30), || server_json.exists()).await,
        "the service never came up"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&server_json).unwrap()).unwrap();
    let url = info["url"].as_str().unwrap().to_string();
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap();
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let created = http
        .post(format!("{url}/api/v1/tenants"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({"slug": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    // The operator signs in with the password install.sh printed, and only with it.
    let sign_in = |password: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(format!("{url}/api/v1/auth/sign-in"))
                .json(&serde_json::json!({"email": "admin@localhost", "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    let refused = sign_in("another password entirely".into()).await;
    assert_eq!(refused.status(), 401);
    let signed_in = sign_in(password.clone()).await;
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me: serde_json::Value = signed_in.json().await.unwrap();
    assert_eq!(me["principal"]["kind"], "operator", "{me}");
    let tenants: serde_json::Value = http
        .get(format!("{url}/api/v1/tenants"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tenants[0]["slug"], "acme", "{tenants}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(data.join("master.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        crate_format(&data),
        Some(wacrm::ops::format::CURRENT_FORMAT)
    );

    // SIGTERM, as `systemctl stop` sends: a clean exit.
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit on SIGTERM: {status}");
    let mut log = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    // journald gets one JSON object per line, and no secret.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
        assert!(
            !line.contains(token.trim()),
            "the operator token was logged"
        );
    }
    assert!(log.contains("wacrm is running"), "{log}");
    assert!(!server_json.exists());
}

fn crate_format(dir: &Path) -> Option<u32> {
    wacrm::ops::format::read_format_file(dir).unwrap()
}
