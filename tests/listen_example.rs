//! The `listen` example, run as a real process: the statuses, JSON answers and stdout lines its
//! usage promises.

mod common;
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};

use common::{head, post_json, send_raw};
use fermion_webhooks::{EventKind, EventPayload, WebhookEvent};
use support::example_binary;

const SECRET: &str = "listen-example-secret-77";

struct Listener {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Listener {
    start_with(extra, true)
}

fn start_with(extra: &[&str], keep_reading_stderr: bool) -> Listener {
    let mut args = vec!["--secret", SECRET];
    args.extend_from_slice(extra);
    launch(&args, keep_reading_stderr)
}

/// Reads the server's first stderr line, `listening on http://ADDR/PATH`: its address, and the
/// rest of stderr.
fn listening_address(child: &mut Child) -> (SocketAddr, BufReader<std::process::ChildStderr>) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first stderr line {first:?}"))
        .parse()
        .unwrap();
    (addr, stderr)
}

/// `listen --addr 127.0.0.1:0` with exactly `args` besides.
fn launch(args: &[&str], keep_reading_stderr: bool) -> Listener {
    let mut child = Command::new(example_binary("listen"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("FERMION_WEBHOOK_SECRET")
        .env_remove("FERMION_STANDARD_WEBHOOKS_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, mut stderr) = listening_address(&mut child);
    if keep_reading_stderr {
        // Keep draining stderr, as a terminal would, so the server's messages never block it.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    }
    let stdout = BufReader::new(child.stdout.take().unwrap());
    Listener {
        child,
        stdout,
        addr,
    }
}

impl Listener {
    fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end_matches('\n').to_owned()
    }

    fn next_json_line(&mut self) -> serde_json::Value {
        let line = self.next_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line {line:?}: {e}"))
    }
}

#[tokio::test]
async fn accepted_events_answer_ok_and_print_one_line_each_with_duplicates_flagged() {
    let mut listener = start(&[]);
    let event = WebhookEvent::test(EventPayload::sample(EventKind::PaidCourseSale));
    let secret = [("X-Fermion-Webhook-Secret", SECRET)];
    for duplicate in [false, true] {
        let response = post_json(
            listener.addr,
            "/webhooks/fermion",
            &secret,
            &event.to_json_bytes(),
        )
        .await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body,
            format!(
                r#"{{"ok":true,"eventUniqueId":"{}","duplicate":{duplicate}}}"#,
                event.event_unique_id
            )
        );
        assert_eq!(
            listener.next_line(),
            format!(
                r#"{{"eventUniqueId":"{}","eventType":"paid-course-sale","isTestEvent":true,"duplicate":{duplicate}}}"#,
                event.event_unique_id
            )
        );
    }
    let unknown = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/unknown-lab-session-started.json"
    ))
    .unwrap();
    let response = post_json(listener.addr, "/webhooks/fermion", &secret, &unknown).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        listener.next_json_line()["eventType"],
        "lab-session-started"
    );
}

/// A request path, its headers, its body, and the status it must get.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Vec<u8>, u16);

#[tokio::test]
async fn refusals_have_the_promised_status_and_a_json_error() {
    let listener = start(&["--max-body-bytes", "2048", "--path", "/hooks"]);
    let good = WebhookEvent::new(EventPayload::sample(EventKind::FreeCourseEnrollment));
    let right = [("X-Fermion-Webhook-Secret", SECRET)];
    let wrong = [("X-Fermion-Webhook-Secret", "nope")];
    let cases: Vec<Case> = vec![
        ("/hooks", &wrong, good.to_json_bytes(), 401),
        ("/hooks", &[], b"garbage".to_vec(), 401),
        ("/hooks", &right, b"{\"not\":\"an event\"}".to_vec(), 400),
        ("/elsewhere", &right, good.to_json_bytes(), 404),
        ("/webhooks/fermion", &right, good.to_json_bytes(), 404),
    ];
    for (path, headers, body, status) in cases {
        let response = post_json(listener.addr, path, headers, &body).await;
        assert_eq!(response.status, status, "{path}: {}", response.body);
        let json = response.json();
        assert_eq!(json["ok"], false);
        assert!(!json["error"].as_str().unwrap().is_empty());
        assert!(!response.body.contains(SECRET));
    }
    // Over the limit: refused from the declared length, without waiting for the body.
    let declared = head("POST", "/hooks", &[right[0], ("Content-Length", "4096")]);
    let too_large = send_raw(listener.addr, declared.as_bytes(), b"").await;
    assert_eq!(too_large.status, 413);
    assert!(
        too_large.json()["error"]
            .as_str()
            .unwrap()
            .contains("2048-byte limit")
    );
    let get = send_raw(listener.addr, head("GET", "/hooks", &[]).as_bytes(), b"").await;
    assert_eq!(get.status, 405);
    assert_eq!(get.json()["ok"], false);
}

#[tokio::test]
async fn an_old_secret_is_accepted_during_rotation() {
    let mut listener = start(&["--also-accept", "the-old-secret"]);
    let event = WebhookEvent::new(EventPayload::sample(EventKind::PaymentFailed));
    let response = post_json(
        listener.addr,
        "/webhooks/fermion",
        &[("X-Fermion-Webhook-Secret", "the-old-secret")],
        &event.to_json_bytes(),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        listener.next_json_line()["eventUniqueId"],
        event.event_unique_id.as_str()
    );
}

#[tokio::test]
async fn the_server_keeps_answering_when_nobody_reads_its_messages() {
    let listener = start_with(&[], false); // stderr closed after the first line
    for _ in 0..3 {
        let response = post_json(
            listener.addr,
            "/webhooks/fermion",
            &[("X-Fermion-Webhook-Secret", "wrong")],
            b"{}",
        )
        .await;
        assert_eq!(response.status, 401);
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        vec![],
        vec!["--secret", ""],
        vec!["--secret", "s", "--addr", "nowhere"],
        vec!["--secret", "s", "--max-body-bytes", "lots"],
        vec!["--secret", "s", "--frobnicate"],
        vec!["--standard-webhooks-secret", "whsec_not-base64!"],
        vec!["--standard-webhooks-secret", "whsec_c2hvcnQ="],
    ] {
        let output = Command::new(example_binary("listen"))
            .args(&args)
            .env_remove("FERMION_WEBHOOK_SECRET")
            .env_remove("FERMION_STANDARD_WEBHOOKS_SECRET")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("usage: listen"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_signs_and_listen_verifies_with_standard_webhooks_alone() {
    let key = fermion_webhooks::SigningSecret::generate()
        .unwrap()
        .expose_secret();
    let mut listener = launch(&["--standard-webhooks-secret", &key], true);
    let url = format!("http://{}/webhooks/fermion", listener.addr);
    let dir = support::TempDir::new("listen-signed");
    let send = |key: &str| {
        Command::new(example_binary("send"))
            .args(["--url", &url, "--secret", "not-checked-by-this-listener"])
            .args([
                "--standard-webhooks-secret",
                key,
                "--event",
                "paid-course-sale",
            ])
            .args(["--allow-private-networks", "--retry-schedule", "50ms"])
            .args(["--log-dir", dir.path().to_str().unwrap()])
            .output()
            .unwrap()
    };
    let signed = send(&key);
    assert_eq!(
        signed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let line = listener.next_json_line();
    assert_eq!(line["eventType"], "paid-course-sale");

    // Signed by another key: every attempt is refused with 401, and send reports the failure.
    let other = fermion_webhooks::SigningSecret::generate()
        .unwrap()
        .expose_secret();
    let forged = send(&other);
    assert_eq!(forged.status.code(), Some(1));
    let result: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&forged.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(result["lastResponseStatus"], 401);
}

/// One attacker connection: the start of a request head, then a byte every 5 s; when the server
/// closes it, a new one. Counts the closes it saw.
async fn slow_loris(addr: SocketAddr, closed: std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        };
        if stream
            .write_all(b"POST /webhooks/fermion HTTP/1.1\r\n")
            .await
            .is_err()
        {
            continue;
        }
        loop {
            let mut buffer = [0u8; 64];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer))
                    .await;
            match read {
                // Closed (or answered and closed) by the server.
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => {
                    if stream.write_all(b"X").await.is_err() {
                        break;
                    }
                }
            }
        }
        closed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holding_1100_slow_connections_under_1024_descriptors_does_not_deny_service() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    // The common limit of 1,024 file descriptors, set for the server alone.
    let script = "ulimit -n 1024 && exec \"$0\" \"$@\"";
    let mut child = Command::new("sh")
        .args(["-c", script])
        .arg(example_binary("listen"))
        .args(["--secret", SECRET, "--addr", "127.0.0.1:0"])
        .env_remove("FERMION_WEBHOOK_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, mut stderr) = listening_address(&mut child);
    let messages = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });
    let server = KillOnDrop(child);
    let closed = Arc::new(AtomicUsize::new(0));
    let attack: Vec<_> = (0..1100)
        .map(|_| tokio::spawn(slow_loris(addr, closed.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let answer = client
        .post(format!("http://{addr}/webhooks/fermion"))
        .header("x-fermion-webhook-secret", SECRET)
        .header("content-type", "application/json")
        .body(event.to_json())
        .send()
        .await
        .expect("the legitimate request is answered during the attack");
    let waited = started.elapsed();
    assert_eq!(answer.status().as_u16(), 200);
    eprintln!(
        "answered after {:.1} s, with 1,100 slow connections held; {} of them cut off so far",
        waited.as_secs_f64(),
        closed.load(Ordering::SeqCst)
    );
    assert!(
        closed.load(Ordering::SeqCst) > 0,
        "slow connections are cut off, never held forever"
    );
    for attacker in attack {
        attacker.abort();
    }
    let mut server = server;
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server is still running"
    );
    drop(server);
    let messages = messages.join().unwrap();
    assert!(
        !messages.contains("accepting a connection failed"),
        "the server never ran out of descriptors: {messages}"
    );
}

/// Kills the process when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_partial_head_an_idle_connection_and_a_slow_body_are_cut_off() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = start(&["--header-timeout", "1", "--request-timeout", "2"]);
    let addr = listener.addr;
    // Reads until the server closes the connection; what it said.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
        let mut said = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut said));
        read.await
            .expect("the server closes the connection")
            .unwrap();
        String::from_utf8_lossy(&said).into_owned()
    }

    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"POST /webhooks/fermion HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert_eq!(
        until_closed(&mut partial).await,
        "",
        "closed without an answer"
    );

    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let said = until_closed(&mut idle).await;
    assert!(
        said.starts_with("HTTP/1.1 404"),
        "answered, then closed when idle: {said}"
    );

    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /webhooks/fermion HTTP/1.1\r\nHost: x\r\nX-Fermion-Webhook-Secret: {SECRET}\r\n\
         Content-Length: 500\r\n\r\n{{"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let said = until_closed(&mut slow).await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
}
