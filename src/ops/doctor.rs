//! `wacrm doctor`: what an operator checks when something is wrong, in one command. Each check
//! says what it found and, when it is a problem, what to do. Exit code 1 if any check failed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, EmbeddingSettings, LlmSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub check: &'static str,
    pub message: String,
}

fn push(out: &mut Vec<Finding>, level: Level, check: &'static str, message: impl Into<String>) {
    out.push(Finding {
        level,
        check,
        message: message.into(),
    });
}

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// Checks of the data directory: exists, private, owned by whoever runs the service, files private.
pub fn check_data_dir(config: &Config, out: &mut Vec<Finding>) {
    let dir = &config.data_dir;
    let Ok(meta) = std::fs::metadata(dir) else {
        push(
            out,
            Level::Warn,
            "data_dir",
            format!(
                "{} does not exist yet; the service creates it (0700) on first start",
                dir.display()
            ),
        );
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        push(
            out,
            Level::Fail,
            "data_dir",
            format!(
                "{} has mode {mode:o}: others can read customer data; run: chmod 700 {}",
                dir.display(),
                dir.display()
            ),
        );
    } else {
        push(
            out,
            Level::Ok,
            "data_dir",
            format!("{} is private ({mode:o})", dir.display()),
        );
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && me != 0 {
        push(out, Level::Warn, "data_dir", format!("{} is owned by uid {}, this command runs as uid {me}; run it as the service user (sudo -u wacrm)", dir.display(), meta.uid()));
    }
    for name in [
        crate::app::MASTER_KEY_FILE,
        crate::web::auth::OPERATOR_TOKEN_FILE,
    ] {
        let path = dir.join(name);
        match mode_of(&path) {
            None => push(out, Level::Warn, "key_files", format!("{} is missing (created on first start; if the service ran before, restore it from a backup)", path.display())),
            Some(m) if m & 0o077 != 0 => push(out, Level::Fail, "key_files", format!("{} has mode {m:o}; run: chmod 600 {}", path.display(), path.display())),
            Some(_) => push(out, Level::Ok, "key_files", format!("{} is private", path.display())),
        }
    }
    if let Ok(m) = std::fs::metadata(dir.join(crate::ops::backup::MANIFEST_FILE)) {
        let _ = m;
        push(out, Level::Warn, "data_dir", "the data directory holds a BACKUP.json: is it a backup copy rather than the live directory?");
    }
    match super::format::read_format_file(dir) {
        Ok(Some(v)) if v > super::format::CURRENT_FORMAT => push(
            out,
            Level::Fail,
            "format",
            format!(
                "format {v} is newer than this binary reads ({}): install the newer wacrm",
                super::format::CURRENT_FORMAT
            ),
        ),
        Ok(Some(v)) => push(out, Level::Ok, "format", format!("data format {v}")),
        Ok(None) => push(
            out,
            Level::Ok,
            "format",
            "no FORMAT file yet (written on the next start)",
        ),
        Err(e) => push(out, Level::Fail, "format", e.to_string()),
    }
}

pub fn check_disk(config: &Config, out: &mut Vec<Finding>) {
    let probe_dir = if config.data_dir.exists() {
        config.data_dir.clone()
    } else {
        config
            .data_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    match super::disk::statvfs_free(&probe_dir) {
        Ok(free) => {
            let mb = free / (1024 * 1024);
            let r = &config.resources;
            let db = super::fsutil::tree_size(&config.data_dir.join(crate::app::DATABASE_FILE))
                / (1024 * 1024);
            if mb < r.min_free_mb_warn {
                push(out, Level::Fail, "disk", format!("{mb} MB free (webhooks are refused below {} MB): free space or grow the disk", r.min_free_mb_webhooks));
            } else if mb < r.min_free_mb_uploads || mb < db * 2 {
                push(out, Level::Warn, "disk", format!("{mb} MB free; uploads stop below {} MB, and an upgrade's backup needs about {db} MB", r.min_free_mb_uploads));
            } else {
                push(out, Level::Ok, "disk", format!("{mb} MB free"));
            }
        }
        Err(e) => push(
            out,
            Level::Warn,
            "disk",
            format!("cannot measure free space: {e}"),
        ),
    }
}

/// Files a local model needs beside `model.onnx` (see `knowledge::embedder`).
const MODEL_SIDE_FILES: [&str; 4] = [
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

/// The local embedding model and ONNX Runtime in the configured `models_dir` (install.sh puts them
/// in /opt/wacrm/models, the unit's WACRM_MODELS_DIR): present, matching their MANIFEST, and
/// loading as the service would load them.
pub async fn check_models(config: &Config, out: &mut Vec<Finding>) {
    let model_id = match &config.embeddings {
        EmbeddingSettings::Local { model, .. } => model.clone(),
        EmbeddingSettings::Openai { base_url, .. } => {
            push(
                out,
                Level::Ok,
                "models",
                format!("embeddings come from {base_url}: no local model needed"),
            );
            return;
        }
    };
    let dir = std::path::absolute(&config.models_dir).unwrap_or_else(|_| config.models_dir.clone());
    let fix = format!(
        "run scripts/fetch-models.sh {} (or install.sh again), or point models_dir (WACRM_MODELS_DIR) at the models",
        dir.display()
    );
    let mut missing = Vec::new();
    match crate::knowledge::embedder::ORT_LIBRARY_NAMES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
    {
        Some(lib) => push(
            out,
            Level::Ok,
            "onnx_runtime",
            format!("{} is there", lib.display()),
        ),
        None => {
            let lib = dir.join(crate::knowledge::embedder::ORT_LIBRARY_NAMES[0]);
            push(
                out,
                Level::Fail,
                "onnx_runtime",
                format!(
                    "{} is missing (the ONNX Runtime library the local model runs on): {fix}",
                    lib.display()
                ),
            );
            missing.push(lib);
        }
    }
    let model_dir = dir.join(&model_id);
    if !model_dir.join("model.onnx").is_file()
        && !model_dir.join("onnx").join("model.onnx").is_file()
    {
        missing.push(model_dir.join("model.onnx"));
    }
    missing.extend(
        MODEL_SIDE_FILES
            .iter()
            .map(|f| model_dir.join(f))
            .filter(|p| !p.is_file()),
    );
    let model_files: Vec<&PathBuf> = missing
        .iter()
        .filter(|p| p.starts_with(&model_dir))
        .collect();
    if !model_files.is_empty() {
        let names: Vec<String> = model_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        push(
            out,
            Level::Fail,
            "models",
            format!(
                "embedding model {model_id} incomplete, missing: {}; {fix}",
                names.join(", ")
            ),
        );
    }
    if !missing.is_empty() {
        return;
    }
    let damaged = match std::fs::read_to_string(dir.join("MANIFEST")) {
        Ok(manifest) => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || damaged_files(&dir, &manifest))
                .await
                .unwrap_or_default()
        }
        Err(_) => {
            push(
                out,
                Level::Warn,
                "models",
                format!(
                    "{} has no MANIFEST: the files cannot be checked against their hashes",
                    dir.display()
                ),
            );
            Vec::new()
        }
    };
    if !damaged.is_empty() {
        push(
            out,
            Level::Fail,
            "models",
            format!(
                "{}: {} do not match the MANIFEST; {fix}",
                dir.display(),
                damaged.join(", ")
            ),
        );
        return;
    }
    // The files are all there: load the model and embed a sentence, as the service will.
    let (load_dir, id) = (dir.clone(), model_id.clone());
    let loaded = tokio::task::spawn_blocking(move || {
        let settings = crate::knowledge::embedder::EmbedderConfig {
            model_id: id,
            intra_threads: Some(1),
            ..Default::default()
        };
        let model = crate::knowledge::embedder::LocalEmbedder::load_with(&load_dir, &settings)?;
        model.embed_query("wacrm doctor").map(|v| v.len())
    })
    .await;
    match loaded {
        Ok(Ok(dimension)) => push(
            out,
            Level::Ok,
            "models",
            format!(
                "{model_id} in {} loads and embeds ({dimension} dimensions)",
                dir.display()
            ),
        ),
        Ok(Err(e)) => push(
            out,
            Level::Fail,
            "models",
            format!("{model_id} in {} does not load: {e}", dir.display()),
        ),
        Err(e) => push(
            out,
            Level::Fail,
            "models",
            format!("{model_id} in {} crashed while loading: {e}", dir.display()),
        ),
    }
}

/// MANIFEST lines are `sha256  path` (sha256sum's format); `#` lines are comments.
fn damaged_files(dir: &Path, manifest: &str) -> Vec<String> {
    use sha2::Digest;
    let mut bad = Vec::new();
    for line in manifest
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        let mut parts = line.split_whitespace();
        let (Some(hash), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        match std::fs::read(dir.join(name)) {
            Ok(bytes) if hex::encode(sha2::Sha256::digest(&bytes)) == hash => {}
            Ok(_) => bad.push(format!("{name} (damaged)")),
            Err(_) => bad.push(format!("{name} (missing)")),
        }
    }
    bad
}

pub fn check_tls(config: &Config, out: &mut Vec<Finding>) {
    let Some(tls) = &config.tls else {
        let public = config.public_url();
        if public.starts_with("https://") {
            push(
                out,
                Level::Ok,
                "tls",
                format!("plain HTTP behind a proxy serving {public}"),
            );
        } else {
            push(out, Level::Warn, "tls", "no [tls] and public_url is not https://: Meta only calls HTTPS webhooks; configure [tls] or a reverse proxy and public_url");
        }
        return;
    };
    match super::tls::load(tls) {
        Err(e) => push(out, Level::Fail, "tls", format!("{e}")),
        Ok(_) => {
            let expiry = super::tls::read_certs(&tls.cert_file)
                .ok()
                .and_then(|c| c.first().and_then(|leaf| super::tls::cert_not_after(leaf)));
            match expiry {
                Some(t) => {
                    let days = (t - jiff::Timestamp::now().as_second()) / 86_400;
                    if days < 0 {
                        push(out, Level::Fail, "tls", format!("the certificate expired {} days ago: renew it (the service reloads it on change)", -days));
                    } else if days < 14 {
                        push(
                            out,
                            Level::Warn,
                            "tls",
                            format!("the certificate expires in {days} days: check its renewal"),
                        );
                    } else {
                        push(
                            out,
                            Level::Ok,
                            "tls",
                            format!("certificate valid for {days} more days"),
                        );
                    }
                }
                None => push(
                    out,
                    Level::Warn,
                    "tls",
                    "cannot read the certificate's expiry",
                ),
            }
        }
    }
    if !Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        push(out, Level::Warn, "tls", "no system CA bundle (/etc/ssl/certs/ca-certificates.crt): outbound HTTPS uses the system's roots; apt-get install ca-certificates");
    }
}

async fn reachable(
    client: &reqwest::Client,
    name: &'static str,
    url: &str,
    out: &mut Vec<Finding>,
) {
    match client.get(url).send().await {
        Ok(r) => push(
            out,
            Level::Ok,
            name,
            format!("{url} answers (HTTP {})", r.status().as_u16()),
        ),
        Err(e) => {
            let why = if e.is_timeout() {
                "timed out".to_string()
            } else {
                e.to_string()
            };
            push(
                out,
                Level::Fail,
                name,
                format!(
                    "{url} is unreachable ({why}): check DNS, the firewall and any outbound proxy"
                ),
            );
        }
    }
}

pub async fn check_remote(config: &Config, out: &mut Vec<Finding>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            push(
                out,
                Level::Fail,
                "remote",
                format!("cannot build an HTTP client: {e}"),
            );
            return;
        }
    };
    reachable(&client, "graph_api", &config.graph.base_url, out).await;
    match &config.llm {
        LlmSettings::Offline => push(
            out,
            Level::Ok,
            "llm_api",
            "offline: answers only from the knowledge base",
        ),
        LlmSettings::Openai {
            base_url, api_key, ..
        } => {
            if api_key.is_empty() {
                push(
                    out,
                    Level::Warn,
                    "llm_api",
                    "llm.api_key is empty (set WACRM_LLM__API_KEY)",
                );
            }
            reachable(
                &client,
                "llm_api",
                &format!("{}/models", base_url.trim_end_matches('/')),
                out,
            )
            .await;
        }
    }
}

/// Runs every check; prints them; fails if any failed.
pub async fn run(config_file: Option<&Path>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let findings = diagnose(config_file, data_dir).await;
    let mut failed = 0;
    for f in &findings {
        let mark = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => {
                failed += 1;
                "FAIL"
            }
        };
        println!("{mark} {:<10} {}", f.check, f.message);
    }
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed; fix them and run wacrm doctor again");
    }
    Ok(())
}

pub async fn diagnose(config_file: Option<&Path>, data_dir: Option<PathBuf>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut config = match Config::load(config_file) {
        Ok(c) => {
            push(&mut out, Level::Ok, "config", "configuration is valid");
            c
        }
        Err(e) => {
            push(&mut out, Level::Fail, "config", e.to_string());
            return out;
        }
    };
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    check_data_dir(&config, &mut out);
    check_disk(&config, &mut out);
    check_models(&config, &mut out).await;
    check_tls(&config, &mut out);
    check_remote(&config, &mut out).await;
    out
}
