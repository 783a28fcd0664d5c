//! `wacrm kb ...` and `wacrm reindex`: knowledge bases from the terminal, through the JSON API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::client::{with_session, ApiClient};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum KbCommand {
    /// Create a knowledge base (tenant-wide, or only for the given outlets).
    Create {
        tenant: String,
        name: String,
        /// Outlet id; repeat for several. Without it every conversation of the tenant searches it.
        #[arg(long = "outlet")]
        outlets: Vec<String>,
    },
    /// List a tenant's knowledge bases, or the documents of one with their status.
    List { tenant: String, kb: Option<String> },
    /// Add documents (txt, md, html, pdf, docx, csv, xlsx) and follow their ingestion.
    Add {
        tenant: String,
        kb: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Return once uploaded instead of waiting for ingestion.
        #[arg(long)]
        no_wait: bool,
    },
    /// Add a web page by URL (fetched and cleaned of navigation and boilerplate).
    AddUrl {
        tenant: String,
        kb: String,
        url: String,
    },
    /// Delete a document (by id), or a whole knowledge base with --base.
    Delete {
        tenant: String,
        id: String,
        /// ID names a knowledge base (id or name): delete it with all its documents.
        #[arg(long)]
        base: bool,
    },
    /// Show what the assistant would retrieve for a question, with scores.
    Search {
        tenant: String,
        query: String,
        #[arg(long)]
        outlet: Option<String>,
        #[arg(long)]
        kb: Option<String>,
        #[arg(long, default_value_t = 5)]
        limit: usize,
        /// Show hits below the configured minimum score too.
        #[arg(long)]
        all: bool,
    },
    /// What the assistant does when nothing relevant is found: offer_human or hand_off.
    Settings {
        tenant: String,
        #[arg(long)]
        no_answer: Option<String>,
    },
    /// Measure retrieval on a document set: hit@1, hit@5, MRR per language (scratch data).
    Eval {
        docs_dir: PathBuf,
        queries: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: Config, cmd: KbCommand) -> anyhow::Result<()> {
    if let KbCommand::Eval {
        docs_dir,
        queries,
        json,
    } = &cmd
    {
        let report = crate::knowledge::eval::run(&config, docs_dir, queries).await?;
        if *json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.render());
        }
        return Ok(());
    }
    with_session(config, |api| async move { run_api(&api, cmd).await }).await
}

pub async fn reindex(config: Config) -> anyhow::Result<()> {
    with_session(config, |api| async move {
        let report = api.post("/api/v1/knowledge/reindex", json!({})).await?;
        println!(
            "reindexed {} chunks (text entries added {}, vectors added {})",
            report["chunks"], report["text_added"], report["vectors_added"]
        );
        Ok(())
    })
    .await
}

async fn run_api(api: &ApiClient, cmd: KbCommand) -> anyhow::Result<()> {
    match cmd {
        KbCommand::Create {
            tenant,
            name,
            outlets,
        } => {
            let kb = api
                .post(
                    &format!("/api/v1/tenants/{tenant}/knowledge-bases"),
                    json!({"name": name, "outlets": outlets}),
                )
                .await?;
            println!(
                "{}\t{}",
                kb["id"].as_str().unwrap_or(""),
                kb["name"].as_str().unwrap_or("")
            );
        }
        KbCommand::List { tenant, kb: None } => {
            let kbs = api
                .get(&format!("/api/v1/tenants/{tenant}/knowledge-bases"))
                .await?;
            println!("ID\tNAME\tDOCUMENTS\tREADY\tFAILED\tCHUNKS\tOUTLETS");
            for kb in kbs.as_array().into_iter().flatten() {
                let outlets = kb["outlets"].as_array().map_or(0, Vec::len);
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    kb["id"].as_str().unwrap_or(""),
                    kb["name"].as_str().unwrap_or(""),
                    kb["documents"],
                    kb["ready"],
                    kb["failed"],
                    kb["chunks"],
                    if outlets == 0 {
                        "all".to_string()
                    } else {
                        outlets.to_string()
                    }
                );
            }
        }
        KbCommand::List {
            tenant,
            kb: Some(kb),
        } => {
            let docs = api
                .get(&format!(
                    "/api/v1/tenants/{tenant}/knowledge-bases/{kb}/documents"
                ))
                .await?;
            println!("ID\tSTATUS\tPROGRESS\tCHUNKS\tNAME\tREASON");
            for d in docs.as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}%\t{}\t{}\t{}",
                    d["id"].as_str().unwrap_or(""),
                    d["status"].as_str().unwrap_or(""),
                    d["progress"],
                    d["chunk_count"],
                    d["name"].as_str().unwrap_or(""),
                    d["failure"]["reason"].as_str().unwrap_or("")
                );
            }
        }
        KbCommand::Add {
            tenant,
            kb,
            files,
            no_wait,
        } => add_files(api, &tenant, &kb, &files, no_wait).await?,
        KbCommand::AddUrl { tenant, kb, url } => {
            let d = api
                .post(
                    &format!("/api/v1/tenants/{tenant}/knowledge-bases/{kb}/documents/url"),
                    json!({"url": url}),
                )
                .await?;
            let bars = MultiProgress::new();
            let id = d["id"].as_str().unwrap_or_default().to_string();
            follow(api, &tenant, &bars, vec![(id, url)]).await?;
        }
        KbCommand::Delete { tenant, id, base } => {
            if base {
                api.delete(&format!("/api/v1/tenants/{tenant}/knowledge-bases/{id}"))
                    .await?;
                println!("knowledge base {id} deleted");
            } else {
                api.delete(&format!("/api/v1/tenants/{tenant}/documents/{id}"))
                    .await?;
                println!("document {id} deleted");
            }
        }
        KbCommand::Search {
            tenant,
            query,
            outlet,
            kb,
            limit,
            all,
        } => {
            let mut body = json!({"query": query, "limit": limit, "outlet": outlet, "kb": kb});
            if all {
                body["min_score"] = json!(0.0);
            }
            let v = api
                .post(&format!("/api/v1/tenants/{tenant}/knowledge/search"), body)
                .await?;
            if let Some(why) = v["dense_unavailable"].as_str() {
                println!("(keyword search only: {why})");
            }
            let hits = v["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                println!("no passage reaches the minimum score {}", v["min_score"]);
            }
            for (i, h) in hits.iter().enumerate() {
                let text: String = h["text"].as_str().unwrap_or("").chars().take(240).collect();
                println!(
                    "[{}] score {:.2}  {}{}  (bm25 rank {}, dense rank {})\n    {}",
                    i + 1,
                    h["score"].as_f64().unwrap_or(0.0),
                    h["document_name"].as_str().unwrap_or(""),
                    h["page"]
                        .as_u64()
                        .map(|p| format!(" p.{p}"))
                        .unwrap_or_default(),
                    h["bm25_rank"]
                        .as_u64()
                        .map_or("-".into(), |r| r.to_string()),
                    h["dense_rank"]
                        .as_u64()
                        .map_or("-".into(), |r| r.to_string()),
                    text.replace('\n', " ")
                );
            }
        }
        KbCommand::Settings { tenant, no_answer } => {
            let path = format!("/api/v1/tenants/{tenant}/knowledge/settings");
            let v = match no_answer {
                Some(policy) => api.put(&path, json!({"no_answer": policy})).await?,
                None => api.get(&path).await?,
            };
            println!("no_answer = {}", v["no_answer"].as_str().unwrap_or(""));
        }
        KbCommand::Eval { .. } => bail!("eval runs without a server"),
    }
    Ok(())
}

async fn add_files(
    api: &ApiClient,
    tenant: &str,
    kb: &str,
    files: &[PathBuf],
    no_wait: bool,
) -> anyhow::Result<()> {
    let mut queued = Vec::new();
    let mut failures = 0;
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let bytes =
            match std::fs::read(path).with_context(|| format!("cannot read {}", path.display())) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("{name}: {e:#}");
                    failures += 1;
                    continue;
                }
            };
        match api
            .upload(
                &format!("/api/v1/tenants/{tenant}/knowledge-bases/{kb}/documents"),
                &name,
                bytes,
            )
            .await
        {
            Ok(v) => {
                for r in v["rejected"].as_array().into_iter().flatten() {
                    eprintln!("{name}: {}", r["reason"].as_str().unwrap_or("refused"));
                    failures += 1;
                }
                for d in v["documents"].as_array().into_iter().flatten() {
                    if d["created"] == false {
                        println!(
                            "{name}: already in this knowledge base (document {})",
                            d["id"].as_str().unwrap_or("")
                        );
                    } else {
                        queued.push((
                            d["id"].as_str().unwrap_or_default().to_string(),
                            name.clone(),
                        ));
                    }
                }
            }
            Err(e) => {
                eprintln!("{name}: {e:#}");
                failures += 1;
            }
        }
    }
    if !no_wait && !queued.is_empty() {
        let bars = MultiProgress::new();
        failures += follow(api, tenant, &bars, queued).await?;
    }
    if failures > 0 {
        bail!("{failures} of {} files were not added", files.len());
    }
    Ok(())
}

/// Progress bars until every document is ready or failed; returns how many failed.
async fn follow(
    api: &ApiClient,
    tenant: &str,
    bars: &MultiProgress,
    docs: Vec<(String, String)>,
) -> anyhow::Result<usize> {
    let style = ProgressStyle::with_template("{prefix:<32!} [{bar:30}] {pos:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let tracked: Vec<(String, ProgressBar)> = docs
        .into_iter()
        .map(|(id, name)| {
            let bar = bars.add(ProgressBar::new(100));
            bar.set_style(style.clone());
            bar.set_prefix(name);
            bar.set_message("queued");
            (id, bar)
        })
        .collect();
    let mut failed = 0;
    let mut open: Vec<usize> = (0..tracked.len()).collect();
    while !open.is_empty() {
        let mut still = Vec::new();
        for i in open {
            let (id, bar) = &tracked[i];
            let d: Value = api
                .get(&format!("/api/v1/tenants/{tenant}/documents/{id}"))
                .await?;
            let status = d["status"].as_str().unwrap_or("");
            // Parsing is the first third of the bar, embedding the rest.
            let progress = d["progress"].as_u64().unwrap_or(0);
            let position = match status {
                "parsing" => progress / 3,
                "embedding" => 33 + progress * 67 / 100,
                "ready" => 100,
                _ => 0,
            };
            bar.set_position(position);
            match status {
                "ready" => bar.finish_with_message(format!("ready, {} chunks", d["chunk_count"])),
                "failed" => {
                    failed += 1;
                    bar.abandon_with_message(format!(
                        "failed: {}",
                        d["failure"]["reason"].as_str().unwrap_or("unknown reason")
                    ));
                }
                other => {
                    bar.set_message(other.to_string());
                    still.push(i);
                }
            }
        }
        open = still;
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(failed)
}
