//! The built-in `command` and `http` tasks, run as the scheduler runs them: through the
//! registry, against real processes and a canned HTTP server on loopback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kairos::history::MAX_OUTPUT_BYTES;
use kairos::task::{Task, TaskFailure, TaskRegistry, TaskRun};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn task(name: &str) -> Arc<dyn Task> {
    TaskRegistry::with_builtins()
        .get(name)
        .unwrap_or_else(|| panic!("{name} is built in"))
}

fn task_run(args: Value) -> TaskRun {
    TaskRun {
        job_id: "nightly-report".to_owned(),
        run_id: "run-42".to_owned(),
        scheduled_time: "2024-11-03T05:30:00Z".parse().expect("a valid time"),
        args,
        from_config: true,
    }
}

async fn run(name: &str, args: Value) -> Result<String, TaskFailure> {
    let task = task(name);
    task.check_args(&args).expect("the args are valid");
    task.run(task_run(args)).await
}

async fn fails(name: &str, args: Value) -> TaskFailure {
    run(name, args).await.expect_err("the run should fail")
}

/// A fresh directory under the system's temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kairos-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

// ---- command ----

#[tokio::test]
async fn command_output_is_captured() {
    let output = run("command", json!({"argv": ["echo", "hello", "world"]}))
        .await
        .expect("echo succeeds");
    assert_eq!(output, "hello world\n");
    let output = run(
        "command",
        json!({"argv": ["sh", "-c", "echo out; sleep 0.1; echo err >&2"]}),
    )
    .await
    .expect("sh succeeds");
    assert_eq!(output, "out\nerr\n");
}

#[tokio::test]
async fn command_stdin_is_empty() {
    let output = run("command", json!({"argv": ["cat"]}))
        .await
        .expect("cat reads nothing and ends");
    assert_eq!(output, "");
}

#[tokio::test]
async fn command_nonzero_exit_fails_with_output() {
    let failure = fails(
        "command",
        json!({"argv": ["sh", "-c", "echo checking; echo broken >&2; exit 3"]}),
    )
    .await;
    assert_eq!(failure.message, "exited with status 3");
    assert!(failure.output.contains("checking\n"), "{failure:?}");
    assert!(failure.output.contains("broken\n"), "{failure:?}");
}

#[tokio::test]
async fn command_killed_by_a_signal_says_so() {
    let failure = fails("command", json!({"argv": ["sh", "-c", "kill -TERM $$"]})).await;
    assert_eq!(failure.message, "killed by signal 15 (SIGTERM)");
}

#[tokio::test]
async fn command_env_and_cwd_are_honoured() {
    let dir = temp_dir("cwd");
    let output = run(
        "command",
        json!({
            "argv": ["sh", "-c", "echo \"$GREETING from $(pwd)\""],
            "env": {"GREETING": "hi there"},
            "cwd": dir,
        }),
    )
    .await
    .expect("sh succeeds");
    let dir = dir.canonicalize().expect("the dir exists");
    assert_eq!(output, format!("hi there from {}\n", dir.display()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn command_inherits_the_environment_unless_cleared() {
    let inherited = run("command", json!({"argv": ["sh", "-c", "echo \"[$HOME]\""]}))
        .await
        .expect("sh succeeds");
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(inherited, format!("[{home}]\n"));

    let output = run(
        "command",
        json!({"argv": ["/usr/bin/env"], "clear_env": true, "env": {"ONLY": "this"}}),
    )
    .await
    .expect("env succeeds");
    let mut names: Vec<&str> = output
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "KAIROS_JOB_ID",
            "KAIROS_RUN_ID",
            "KAIROS_SCHEDULED_TIME",
            "ONLY"
        ]
    );
}

#[tokio::test]
async fn command_gets_the_run_identity() {
    let output = run(
        "command",
        json!({
            "shell": true,
            "command": "echo \"$KAIROS_JOB_ID|$KAIROS_RUN_ID|$KAIROS_SCHEDULED_TIME\"",
            // A job cannot pretend to be another one.
            "env": {"KAIROS_JOB_ID": "someone-else"},
        }),
    )
    .await
    .expect("sh succeeds");
    assert_eq!(output, "nightly-report|run-42|2024-11-03T05:30:00Z\n");
}

#[tokio::test]
async fn command_shell_mode_runs_a_command_line() {
    let output = run(
        "command",
        json!({"shell": true, "command": "echo apple | tr a-z A-Z && echo $((6 * 7))"}),
    )
    .await
    .expect("sh succeeds");
    assert_eq!(output, "APPLE\n42\n");
    // Without the shell, the same words are plain arguments.
    let output = run("command", json!({"argv": ["echo", "$HOME", "|", "*"]}))
        .await
        .expect("echo succeeds");
    assert_eq!(output, "$HOME | *\n");
}

#[tokio::test]
async fn command_timeout_kills_the_whole_process_group() {
    let dir = temp_dir("timeout");
    let pid_file = dir.join("pgid");
    let started = Instant::now();
    let failure = fails(
        "command",
        json!({
            "shell": true,
            // The shell leads the group: $$ is its id.
            "command": format!(
                "sleep 1000 & echo $$ > '{}'; echo started; sleep 1000",
                pid_file.display()
            ),
            "timeout": "1s",
        }),
    )
    .await;
    assert_eq!(failure.message, "timed out after 1s");
    assert_eq!(failure.output, "started\n");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let pgid: libc::pid_t = std::fs::read_to_string(&pid_file)
        .expect("the shell wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(pgid > 1);
    assert!(
        group_is_gone(pgid).await,
        "a process of group {pgid} is left"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the group has no process left, waiting a little for the kernel to finish
/// delivering the kill and the orphaned `sleep`s to be reaped.
async fn group_is_gone(pgid: libc::pid_t) -> bool {
    for _ in 0..100 {
        if !group_exists(pgid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[allow(unsafe_code)]
fn group_exists(pgid: libc::pid_t) -> bool {
    // SAFETY: kill(2) with signal 0 only checks whether the group exists; it takes two
    // integers and touches no memory of ours. `pgid > 1` was checked by the caller.
    let result = unsafe { libc::kill(-pgid, 0) };
    !(result == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH))
}

#[tokio::test]
async fn command_does_not_wait_for_background_children() {
    // The `sleep` keeps the output pipes open after the shell exits; the run ends with
    // the shell all the same, and the `sleep` is left alone (it ends on its own).
    let started = Instant::now();
    let output = run(
        "command",
        json!({"shell": true, "command": "sleep 3 & echo done"}),
    )
    .await
    .expect("the shell succeeds");
    assert_eq!(output, "done\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn command_output_is_bounded() {
    let started = Instant::now();
    let output = run(
        "command",
        json!({
            "shell": true,
            // The order across stdout and stderr is only as good as their arrival, so the
            // last words go to stdout too.
            "command": "head -c 100000000 /dev/zero | tr '\\0' a; echo; echo the end",
        }),
    )
    .await
    .expect("the command succeeds");
    assert!(output.len() <= MAX_OUTPUT_BYTES, "{} bytes", output.len());
    assert!(output.starts_with("aaaa"));
    assert!(
        output.contains("[output cut: 100000009 bytes in all"),
        "{}",
        &output[MAX_OUTPUT_BYTES / 2 - 100..MAX_OUTPUT_BYTES / 2 + 100]
    );
    assert!(output.ends_with("aaa\nthe end\n"));
    eprintln!("100 MB of output read in {:?}", started.elapsed());
}

#[tokio::test]
async fn command_program_not_found_is_a_failure() {
    let failure = fails("command", json!({"argv": ["kairos-no-such-program", "x"]})).await;
    assert_eq!(
        failure.message,
        "program not found: kairos-no-such-program (looked in PATH)"
    );
    let failure = fails("command", json!({"argv": ["/nonexistent/bin/tool"]})).await;
    assert_eq!(failure.message, "program not found: /nonexistent/bin/tool");
    let failure = fails(
        "command",
        json!({"argv": ["true"], "cwd": "/nonexistent/dir"}),
    )
    .await;
    assert!(
        failure.message.starts_with("cwd: /nonexistent/dir: "),
        "{failure:?}"
    );
    let dir = temp_dir("not-executable");
    let script = dir.join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").expect("a file");
    let failure = fails("command", json!({"argv": [script]})).await;
    assert_eq!(
        failure.message,
        format!(
            "cannot run {}: permission denied (is it executable?)",
            script.display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn command_args_are_checked_when_the_job_is_added() {
    let command = task("command");
    let error = |args: Value| command.check_args(&args).expect_err("refused");
    assert!(error(json!({"argv": []})).starts_with("argv: must be a non-empty array of strings"));
    assert!(
        error(json!({"argv": "ls -l"})).starts_with("argv: must be a non-empty array of strings")
    );
    assert!(error(json!({"argv": ["ls"], "timeout": "abc"}))
        .starts_with(r#"timeout: "abc" is not a duration"#));
    assert_eq!(
        error(json!({"argv": ["ls"], "timout": "1m"})),
        r#"timout: unknown key (did you mean "timeout"?)"#
    );
    assert!(
        error(json!({"argv": ["ls"], "shell": true, "command": "ls"}))
            .starts_with("argv: not allowed")
    );
    assert!(error(json!({"command": "ls | wc -l"}))
        .starts_with("command: runs only with \"shell\": true"));
    assert!(command
        .check_args(&json!({"argv": ["ls", "-l"], "timeout": 30, "env": {"A": "b"}}))
        .is_ok());
}

// ---- http ----

/// What the canned server saw.
#[derive(Debug)]
struct Request {
    head: String,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Serves one request on a fresh loopback port with `status` and `body`, and hands back
/// the request it got.
async fn serve_once(
    status: &str,
    body: impl Into<Vec<u8>>,
) -> (String, tokio::task::JoinHandle<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let status = status.to_owned();
    let body = body.into();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("a connection");
        let request = read_request(&mut socket).await;
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        // The client may hang up early (a cut body); that is its right.
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(&body).await;
        let _ = socket.shutdown().await;
        request
    });
    (url, server)
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Request {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let read = socket.read(&mut chunk).await.expect("a request");
        assert!(read > 0, "the client hung up mid-request");
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = socket.read(&mut chunk).await.expect("a body");
        assert!(read > 0, "the client hung up mid-body");
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = String::from_utf8_lossy(&buffer[head_end..]).into_owned();
    Request { head, body }
}

#[tokio::test]
async fn http_success_keeps_status_and_body() {
    let (url, server) = serve_once("200 OK", "all good").await;
    let output = run("http", json!({"url": format!("{url}/health")}))
        .await
        .expect("200 is a success");
    assert_eq!(output, "HTTP/1.1 200 OK\nall good");
    let request = server.await.expect("the server ran");
    assert!(
        request.head.starts_with("GET /health HTTP/1.1\r\n"),
        "{request:?}"
    );
    assert!(request
        .header("user-agent")
        .is_some_and(|agent| agent.starts_with("kairos/")));
}

#[tokio::test]
async fn http_unexpected_status_fails() {
    let (url, _server) = serve_once("503 Service Unavailable", "try later").await;
    let failure = fails("http", json!({"url": url})).await;
    assert_eq!(failure.message, "expected status 2xx, got 503");
    assert_eq!(
        failure.output,
        "HTTP/1.1 503 Service Unavailable\ntry later"
    );
}

#[tokio::test]
async fn http_expect_status_accepts_lists_and_classes() {
    let (url, _server) = serve_once("204 No Content", "").await;
    let output = run("http", json!({"url": url, "expect_status": [200, 204]}))
        .await
        .expect("204 is listed");
    assert_eq!(output, "HTTP/1.1 204 No Content\n");

    let (url, _server) = serve_once("202 Accepted", "queued").await;
    let failure = fails("http", json!({"url": url, "expect_status": [200, 204]})).await;
    assert_eq!(failure.message, "expected status 200 or 204, got 202");

    let (url, _server) = serve_once("201 Created", "made").await;
    run("http", json!({"url": url, "expect_status": "2xx"}))
        .await
        .expect("201 is 2xx");

    let (url, _server) = serve_once("404 Not Found", "gone").await;
    run("http", json!({"url": url, "expect_status": 404}))
        .await
        .expect("404 is expected");

    let (url, _server) = serve_once("200 OK", "fine").await;
    let failure = fails("http", json!({"url": url, "expect_status": "5xx"})).await;
    assert_eq!(failure.message, "expected status 5xx, got 200");
}

#[tokio::test]
async fn http_post_sends_json_body_and_headers() {
    let (url, server) = serve_once("200 OK", "{\"ok\":true}").await;
    run(
        "http",
        json!({
            "url": format!("{url}/hooks/report?day=today"),
            "method": "POST",
            "headers": {"Authorization": "Bearer s3cret", "X-Request-Source": "kairos"},
            "body": {"report": "daily", "rows": [1, 2]},
        }),
    )
    .await
    .expect("the POST succeeds");
    let request = server.await.expect("the server ran");
    assert!(
        request
            .head
            .starts_with("POST /hooks/report?day=today HTTP/1.1\r\n"),
        "{request:?}"
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(request.header("x-request-source"), Some("kairos"));
    let body: Value = serde_json::from_str(&request.body).expect("a JSON body");
    assert_eq!(body, json!({"report": "daily", "rows": [1, 2]}));
}

#[tokio::test]
async fn http_text_body_is_sent_as_is() {
    let (url, server) = serve_once("200 OK", "").await;
    run(
        "http",
        json!({
            "url": url,
            "method": "PUT",
            "headers": {"Content-Type": "text/plain"},
            "body": "line one\nline two",
        }),
    )
    .await
    .expect("the PUT succeeds");
    let request = server.await.expect("the server ran");
    assert!(request.head.starts_with("PUT / HTTP/1.1\r\n"));
    assert_eq!(request.header("content-type"), Some("text/plain"));
    assert_eq!(request.body, "line one\nline two");
}

#[tokio::test]
async fn http_times_out_on_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let url = format!("http://{}/slow", listener.local_addr().expect("an address"));
    // Accepts and reads, never answers; holds the connection until the test ends.
    let _server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("a connection");
        let mut sink = Vec::new();
        let _ = socket.read_to_end(&mut sink).await;
    });
    let started = Instant::now();
    let failure = fails("http", json!({"url": url, "timeout": "300ms"})).await;
    assert_eq!(failure.message, "timed out after 300ms");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn http_connection_refused_is_named() {
    // A port that was free a moment ago and has no listener now.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let address = listener.local_addr().expect("an address");
    drop(listener);
    let failure = fails("http", json!({"url": format!("http://{address}/")})).await;
    assert_eq!(
        failure.message,
        format!("cannot connect to {address}: connection refused")
    );
}

#[tokio::test]
async fn http_large_body_is_bounded() {
    let (url, _server) = serve_once("200 OK", vec![b'x'; 10_000_000]).await;
    let output = run("http", json!({"url": url})).await.expect("200");
    assert!(output.len() <= MAX_OUTPUT_BYTES, "{} bytes", output.len());
    assert!(output.starts_with("HTTP/1.1 200 OK\nxxx"));
    assert!(
        output.ends_with(" of 10000000 bytes]"),
        "{}",
        &output[output.len() - 100..]
    );
}

#[tokio::test]
async fn http_tls_to_a_plain_server_fails_cleanly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let address = listener.local_addr().expect("an address");
    let _server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("a connection");
        let _ = socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
    });
    let failure = fails("http", json!({"url": format!("https://{address}/")})).await;
    assert!(
        failure
            .message
            .starts_with(&format!("cannot connect to {address}: ")),
        "{failure:?}"
    );
}

#[test]
fn http_args_are_checked_when_the_job_is_added() {
    let http = task("http");
    let error = |args: Value| http.check_args(&args).expect_err("refused");
    assert!(error(json!({"url": "localhost:8080/health"})).starts_with("url: "));
    assert!(error(json!({"url": "ftp://example.com/file"})).starts_with("url: "));
    assert!(error(json!({"url": "http://x", "method": "GET /"})).starts_with("method: "));
    assert!(error(json!({"url": "http://x", "headers": {"X": 1}})).starts_with("headers.X: "));
    assert!(error(json!({"url": "http://x", "expect_status": "ok"})).starts_with("expect_status: "));
    assert!(
        error(json!({"url": "http://x", "expect_status": [200, 999]}))
            .starts_with("expect_status: 999")
    );
    assert_eq!(
        error(json!({"url": "http://x", "header": {}})),
        r#"header: unknown key (did you mean "headers"?)"#
    );
    assert!(http
        .check_args(
            &json!({"url": "https://example.com", "expect_status": [200, "3xx"], "timeout": "2m"})
        )
        .is_ok());
}

// ---- http: where jobs added through the API may connect (docs/threat-model.md) ----

/// A run of a job that does not come from the config files.
fn api_run(args: Value) -> TaskRun {
    TaskRun {
        from_config: false,
        ..task_run(args)
    }
}

/// The `http` task with `[api] http_allow = allow`.
fn http_allowing(allow: &[&str]) -> kairos::task::http::HttpTask {
    kairos::task::http::HttpTask::from_settings(&json!({ "allow": allow })).expect("valid settings")
}

/// Answers one request with a redirect to `location`, and hands back the request.
async fn redirect_once(location: String) -> (String, tokio::task::JoinHandle<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("a connection");
        let request = read_request(&mut socket).await;
        let head = format!(
            "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.shutdown().await;
        request
    });
    (url, server)
}

#[tokio::test]
async fn an_api_http_job_never_reaches_the_metadata_service() {
    // Listed or not, link-local is refused, before any connection is tried.
    let task = http_allowing(&["0.0.0.0/0", "169.254.0.0/16"]);
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
    ] {
        let failure = task
            .run(api_run(json!({"url": url, "timeout": "2s"})))
            .await
            .expect_err("refused");
        assert!(
            failure.message.contains("link-local") && failure.message.contains("never"),
            "{url}: {}",
            failure.message
        );
    }
}

#[tokio::test]
async fn an_api_http_job_reaches_loopback_only_when_listed() {
    let (url, server) = serve_once("200 OK", "inside").await;
    let failure = task("http")
        .run(api_run(json!({"url": url})))
        .await
        .expect_err("loopback is not listed");
    assert!(failure.message.contains("loopback"), "{}", failure.message);
    assert!(
        failure.message.contains("http_allow"),
        "{}",
        failure.message
    );
    // By name too: localhost resolves to loopback.
    let by_name = url.replace("127.0.0.1", "localhost");
    let failure = task("http")
        .run(api_run(json!({"url": by_name})))
        .await
        .expect_err("localhost is loopback");
    assert!(failure.message.contains("loopback"), "{}", failure.message);
    // Listed, it is reached; a config-file job needs no listing.
    let output = http_allowing(&["127.0.0.1/32"])
        .run(api_run(json!({"url": url})))
        .await
        .expect("listed");
    assert!(output.contains("inside"), "{output}");
    server.await.expect("the server ran");
    let (url, server) = serve_once("200 OK", "mine").await;
    let output = run("http", json!({"url": url})).await.expect("config job");
    assert!(output.contains("mine"));
    server.await.expect("the server ran");
}

#[tokio::test]
async fn an_api_http_job_is_not_redirected_to_the_metadata_service() {
    let (url, server) = redirect_once("http://169.254.169.254/latest/meta-data/".to_owned()).await;
    let failure = http_allowing(&["127.0.0.1"])
        .run(api_run(json!({"url": url, "timeout": "2s"})))
        .await
        .expect_err("the redirect is refused");
    assert!(
        failure.message.contains("169.254.169.254"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("link-local"),
        "{}",
        failure.message
    );
    server.await.expect("the server ran");
}

#[tokio::test]
async fn custom_headers_do_not_follow_a_redirect_to_another_host() {
    let (target, landed) = serve_once("200 OK", "landed").await;
    // Another host: the same server by another name.
    let elsewhere = target.replace("127.0.0.1", "localhost");
    let (url, first) = redirect_once(format!("{elsewhere}/next")).await;
    let output = run(
        "http",
        json!({"url": url, "headers": {"Authorization": "Bearer order-secret", "X-Api-Key": "k"}}),
    )
    .await
    .expect("the redirect is followed");
    assert!(output.contains("landed"), "{output}");
    let first = first.await.expect("the first server ran");
    assert_eq!(first.header("authorization"), Some("Bearer order-secret"));
    let landed = landed.await.expect("the second server ran");
    assert_eq!(landed.header("authorization"), None, "{}", landed.head);
    assert_eq!(landed.header("x-api-key"), None, "{}", landed.head);
}
