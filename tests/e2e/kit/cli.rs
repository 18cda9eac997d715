//! The `wharf` commands at their edges, run as the binary: output into a pipe whose reader has
//! gone (`| head -1`) ends quietly, counts read as words, an upstream that is not there is
//! refused by name, `client-config --ca` writes a path containerd can open from anywhere, and
//! `client-config docker --out` prints the snippet it asks the operator to merge.

use std::io::{Read, Seek};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use wharf_e2e::process::{CmdOut, run};
use wharf_e2e::util::{free_port, temp_dir, write_file};
use wharf_e2e::wharf::wharf_bin;
use wharf_e2e::{Upstream, Wharf};

/// `wharf ARGS` in `dir`, bounded.
fn wharf_in(dir: &Path, args: &[&str]) -> CmdOut {
    run(
        Command::new(wharf_bin()).current_dir(dir).args(args),
        Duration::from_secs(120),
    )
}

/// `wharf ARGS` writing into a pipe whose reader is already closed, as `wharf ... | head -1`
/// is once head has its line: the exit status and stderr.
fn into_closed_pipe(args: &[&str]) -> (ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut err = tempfile::tempfile().expect("tempfile");
    let mut child = Command::new(wharf_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::from(err.try_clone().expect("dup")))
        .spawn()
        .expect("spawn wharf");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wharf {args:?} did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    err.rewind().expect("rewind");
    err.read_to_string(&mut stderr).expect("stderr");
    (status, stderr)
}

/// No panic, no backtrace: what a closed pipe must never cause.
fn assert_quiet(args: &[&str], expected_code: i32) {
    let (status, stderr) = into_closed_pipe(args);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "wharf {args:?} into a closed pipe: {status}\n{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(expected_code),
        "wharf {args:?} into a closed pipe\n{stderr}"
    );
}

#[test]
fn a_closed_pipe_ends_the_commands_quietly() {
    assert_quiet(&["default-config"], 0);
    assert_quiet(
        &["client-config", "podman", "--mirror", "127.0.0.1:5000"],
        0,
    );
    // Nothing listens there: the image fails, and says so on stderr and in the exit code.
    let mirror = format!("http://127.0.0.1:{}", free_port());
    let (status, stderr) = into_closed_pipe(&["prefetch", "--mirror", &mirror, "hello:latest"]);
    assert!(!stderr.contains("panicked"), "{status}\n{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("hello:latest"),
        "the failure is named:\n{stderr}"
    );

    let up = Upstream::plain();
    let w = Wharf::for_upstream(&up);
    let admin = w.admin_url().trim_start_matches("http://").to_owned();
    assert_quiet(&["cache", "ls", "--json", "--admin", &admin], 0);
    assert_quiet(&["cache", "stats", "--admin", &admin], 0);
}

#[test]
fn cache_ls_of_an_upstream_that_is_not_there_is_refused_by_name() {
    let up = Upstream::plain();
    let w = Wharf::for_upstream(&up);
    let admin = w.admin_url().trim_start_matches("http://").to_owned();
    let dir = temp_dir("kit-cli");
    let out = wharf_in(dir.path(), &["cache", "ls", "nosuch", "--admin", &admin]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert!(
        out.stderr.contains("\"nosuch\"") && out.stderr.contains("oracle"),
        "names the upstreams there are:\n{out}"
    );
    wharf_in(dir.path(), &["cache", "ls", "oracle", "--admin", &admin])
        .expect_ok("wharf cache ls oracle");
}

#[test]
fn check_config_counts_in_words() {
    let dir = temp_dir("kit-cli");
    let file = dir.path().join("one.toml");
    write_file(
        &file,
        "[[upstream]]\nname = \"o\"\nurl = \"https://container-registry.oracle.com\"\n\
         default = true\n",
    );
    let out = wharf_in(dir.path(), &["check-config", "one.toml"]).expect_ok("check-config");
    assert!(out.stdout.contains("ok (1 upstream,"), "{out}");
    let out = wharf_in(dir.path(), &["serve", "--help"]).expect_ok("serve --help");
    let config_help = out
        .stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("-c, --config"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        config_help.contains("configuration file"),
        "--config is explained:\n{out}"
    );
}

#[test]
fn client_config_writes_the_ca_absolute_and_refuses_a_missing_one() {
    let dir = temp_dir("kit-cli");
    let root = dir.path().join("tls").join("root.crt");
    write_file(&root, "-----BEGIN CERTIFICATE-----\n");
    let args = |ca: &'static str| {
        [
            "client-config",
            "containerd",
            "--mirror",
            "https://127.0.0.1:5000",
            "--ca",
            ca,
            "--out",
            "certs.d",
        ]
    };
    wharf_in(dir.path(), &args("tls/root.crt")).expect_ok("client-config --ca relative");
    let file = dir.path().join("certs.d/docker.io/hosts.toml");
    let text = std::fs::read_to_string(&file).expect("hosts.toml written");
    let doc: toml::Table = text.parse().expect("TOML");
    let ca = doc["host"]["https://127.0.0.1:5000"]["ca"]
        .as_str()
        .expect("ca")
        .to_owned();
    assert!(Path::new(&ca).is_absolute(), "{text}");
    assert_eq!(
        Path::new(&ca),
        root.canonicalize().expect("canonical"),
        "{text}"
    );

    let out = wharf_in(dir.path(), &args("tls/missing.crt"));
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert!(out.stderr.contains("tls/missing.crt"), "{out}");
}

#[test]
fn client_config_docker_out_prints_what_it_asks_to_merge() {
    let dir = temp_dir("kit-cli");
    let args = [
        "client-config",
        "docker",
        "--mirror",
        "127.0.0.1:5000",
        "--out",
        "etc-docker",
    ];
    wharf_in(dir.path(), &args).expect_ok("client-config docker --out (new file)");
    let daemon = dir.path().join("etc-docker/daemon.json");
    let before = std::fs::read_to_string(&daemon).expect("daemon.json written");
    write_file(&daemon, "{\"debug\": true}\n");
    let out = wharf_in(dir.path(), &args);
    assert!(!out.ok(), "nothing was written: {out}");
    assert!(out.stderr.contains("printed above"), "{out}");
    assert_eq!(out.stdout, before, "the snippet to merge is printed");
    assert_eq!(
        std::fs::read_to_string(&daemon).expect("daemon.json"),
        "{\"debug\": true}\n",
        "the operator's daemon.json is left as it is"
    );
}
