//! `wharf cache stats|ls|rm`: look into and trim the cache of a running wharf, through its
//! admin listener (the JSON API in `wharf_proxy::admin`).
//!
//! The address is `--admin`, else `server.admin_listen` of `--config`, else of
//! `/etc/wharf/wharf.toml`, else of the embedded default (`127.0.0.1:5001`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::{mirror, output};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Sub,
    /// The running wharf's admin address, `host:port` (default: server.admin_listen of the
    /// configuration).
    #[arg(long, global = true)]
    admin: Option<String>,
    /// The configuration the running wharf uses, to find its admin address.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Print the server's JSON answer as it is.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Size, budget, entries and hit ratio (manifest and blob requests answered from the store
    /// out of all answered, since wharf started: the dashboard's definition).
    Stats,
    /// Cached repositories and tags, per upstream.
    Ls {
        /// Only this upstream (its configured name).
        upstream: Option<String>,
    },
    /// Drop a tag, or with --image a whole image, so the next pull fetches it again.
    Rm {
        /// `<name>[:tag]` or `<name>@<digest>`, named as clients name it through wharf:
        /// `oracle/os/oraclelinux:7-slim`, `container-registry.oracle.com/os/oraclelinux:7-slim`,
        /// or `hello:latest` for the default upstream. A digest always drops the image.
        reference: String,
        /// Also drop the image's manifests, config and layers (shared layers included: they
        /// are fetched again when needed).
        #[arg(long)]
        image: bool,
    },
}

/// How long one admin request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn run(args: Args) -> ExitCode {
    let addr = match admin_addr(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wharf cache: {e}");
            return ExitCode::from(2);
        }
    };
    let (method, path, body) = match &args.command {
        Sub::Stats => (Method::GET, "/admin/cache/stats", None),
        Sub::Ls { .. } => (Method::GET, "/admin/cache/tags", None),
        Sub::Rm { reference, image } => (
            Method::POST,
            "/admin/cache/rm",
            Some(json!({"ref": reference, "image": image})),
        ),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wharf cache: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let answer = runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, request(&addr, method, path, body))
            .await
            .unwrap_or_else(|_| Err(format!("{addr} did not answer within {TIMEOUT:?}")))
    });
    let (status, v) = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wharf cache: cannot reach the admin API of wharf at {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    if !(200..300).contains(&status) {
        let msg = v.get("error").and_then(Value::as_str).unwrap_or("");
        eprintln!("wharf cache: {status}: {msg}");
        return ExitCode::FAILURE;
    }
    // Checked before --json too: an upstream that is not there is a mistake either way.
    if let Sub::Ls {
        upstream: Some(name),
    } = &args.command
        && let Err(e) = known_upstream(&v, name)
    {
        eprintln!("wharf cache ls: {e}");
        return ExitCode::from(2);
    }
    let text = if args.json {
        format!("{v:#}\n")
    } else {
        match &args.command {
            Sub::Stats => render_stats(&v),
            Sub::Ls { upstream } => render_ls(&v, upstream.as_deref()),
            Sub::Rm { .. } => render_rm(&v),
        }
    };
    output::finish("wharf cache", &text, ExitCode::SUCCESS)
}

fn admin_addr(args: &Args) -> Result<String, String> {
    if let Some(a) = &args.admin {
        let a = a.trim_start_matches("http://").trim_end_matches('/');
        return Ok(a.to_owned());
    }
    let (config, _) = mirror::load_config(args.config.as_deref())?;
    Ok(connectable(config.server.admin_listen).to_string())
}

/// A listen address as a client dials it: an unspecified address means this host.
fn connectable(mut a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            Ipv6Addr::LOCALHOST.into()
        });
    }
    a
}

/// One HTTP/1.1 request on a fresh connection; the answer's status and JSON body.
async fn request(
    addr: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v = serde_json::from_slice(&body).map_err(|e| {
        format!("the answer ({status}) is not JSON ({e}): is {addr} a wharf admin listener?")
    })?;
    Ok((status, v))
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// 1536 -> "1.5 KiB"
fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = bytes as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}

fn render_stats(v: &Value) -> String {
    let (size, max) = (u(v, "size_bytes"), u(v, "max_size_bytes"));
    let pct = if max > 0 {
        size as f64 * 100.0 / max as f64
    } else {
        0.0
    };
    let ratio = v
        .get("hit_ratio")
        .and_then(Value::as_f64)
        .map_or("-".to_owned(), |r| format!("{:.1} %", r * 100.0));
    format!(
        "size       {} of {} ({pct:.1} %)\n\
         entries    {} ({} manifests, {} blobs)\n\
         tags       {}\n\
         hit ratio  {ratio} ({} of {} manifest and blob requests answered from the store)\n\
         stale      {} tag answers served while the upstream failed\n",
        human(size),
        human(max),
        u(v, "entries"),
        u(v, "manifests"),
        u(v, "blobs"),
        u(v, "tags"),
        u(v, "hits"),
        u(v, "hits") + u(v, "misses"),
        u(v, "stale_served"),
    )
}

/// The configured upstreams the admin API listed (every one, even with nothing cached).
fn upstream_names(v: &Value) -> Vec<&str> {
    v.get("upstreams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|u| u.get("name").and_then(Value::as_str))
        .collect()
}

/// `Ok` if `name` is one of the running wharf's upstreams, else an error naming them.
fn known_upstream(v: &Value, name: &str) -> Result<(), String> {
    let names = upstream_names(v);
    if names.contains(&name) {
        return Ok(());
    }
    let there = if names.is_empty() {
        "it has none".to_owned()
    } else {
        format!("its upstreams are {}", names.join(", "))
    };
    Err(format!("this wharf has no upstream {name:?}: {there}"))
}

fn render_ls(v: &Value, only: Option<&str>) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let list = |v: &Value, k: &str| v.get(k).and_then(Value::as_array).unwrap_or(&empty).clone();
    for up in list(v, "upstreams") {
        let name = up.get("name").and_then(Value::as_str).unwrap_or("?");
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let repos = list(&up, "repositories");
        out += &format!("{name} ({} repositories)\n", repos.len());
        for repo in repos {
            let rname = repo.get("name").and_then(Value::as_str).unwrap_or("?");
            out += &format!("  {rname}\n");
            for t in list(&repo, "tags") {
                let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let mut notes = vec![format!("validated {}s ago", u(&t, "validated_secs_ago"))];
                if t.get("immutable").and_then(Value::as_bool) == Some(true) {
                    notes.push("immutable".into());
                }
                if t.get("manifest_cached").and_then(Value::as_bool) == Some(false) {
                    notes.push("manifest evicted".into());
                }
                out += &format!(
                    "    {:<20} {}  ({})\n",
                    s("tag"),
                    s("digest"),
                    notes.join(", ")
                );
            }
        }
    }
    out
}

fn render_rm(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let tags: Vec<String> = v
        .get("removed_tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    let mut out = format!(
        "upstream {}, repository {}\n",
        s("upstream"),
        s("repository")
    );
    if !tags.is_empty() {
        out += &format!("  tags removed: {}\n", tags.join(", "));
    }
    let removed = u(v, "removed_content");
    if removed > 0 {
        out += &format!(
            "  content removed: {removed} manifests and blobs of {}, {} freed\n",
            s("digest"),
            human(u(v, "freed_bytes"))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(50 << 30), "50.0 GiB");
    }

    #[test]
    fn unspecified_listen_addresses_are_dialled_on_loopback() {
        let a: SocketAddr = "0.0.0.0:5001".parse().unwrap();
        assert_eq!(connectable(a).to_string(), "127.0.0.1:5001");
        let a: SocketAddr = "10.0.0.5:5001".parse().unwrap();
        assert_eq!(connectable(a), a);
    }

    #[test]
    fn ls_of_an_unknown_upstream_names_the_ones_there_are() {
        let v = json!({"upstreams": [{"name": "oracle", "repositories": []},
            {"name": "docker", "repositories": []}]});
        assert_eq!(known_upstream(&v, "oracle"), Ok(()));
        let e = known_upstream(&v, "nosuch").expect_err("no such upstream");
        assert!(
            e.contains("\"nosuch\"") && e.contains("oracle, docker"),
            "{e}"
        );
        let e = known_upstream(&json!({"upstreams": []}), "x").expect_err("none");
        assert!(e.contains("none"), "{e}");
    }

    #[test]
    fn stats_render_the_figures_an_operator_asks_for() {
        let v = json!({"size_bytes": 1 << 30, "max_size_bytes": 4u64 << 30, "entries": 10,
            "manifests": 2, "blobs": 8, "tags": 3, "hits": 9, "misses": 1, "hit_ratio": 0.9,
            "stale_served": 0});
        let s = render_stats(&v);
        assert!(s.contains("1.0 GiB of 4.0 GiB (25.0 %)"), "{s}");
        assert!(s.contains("90.0 %"), "{s}");
        assert!(s.contains("(9 of 10 manifest and blob requests"), "{s}");
    }
}
