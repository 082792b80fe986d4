//! The `send`, `logs retrigger`, `quickstart` and `dashboard` examples, run as real processes
//! against real receivers on 127.0.0.1: their JSON lines, exit statuses and what lands in the log.

mod common;
mod support;

use std::path::Path;
use std::process::{Command, Output};

use common::receiver::{Reply, TestReceiver};
use fermion_webhooks::store::LogFilter;
use fermion_webhooks::{FileLogStore, LogStore};
use support::{TempDir, example_binary};

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(example_binary(name))
        .args(args)
        .output()
        .unwrap()
}

fn lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn send(log_dir: &Path, url: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "--url",
        url,
        "--secret",
        "cli-secret",
        "--log-dir",
        log_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run("send", &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_samples_and_prints_one_line_each() {
    let receiver = TestReceiver::ok().await;
    let dir = TempDir::new("cli-send");
    let output = send(
        dir.path(),
        &receiver.url(),
        &[
            "--event",
            "paid-course-sale",
            "--count",
            "3",
            "--allow-private-networks",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = lines(&output);
    assert_eq!(lines.len(), 3);
    for line in &lines {
        assert_eq!(line["eventType"], "paid-course-sale");
        assert_eq!(line["status"], "delivered");
        assert_eq!(line["attempts"], 1);
        assert_eq!(line["lastResponseStatus"], 200);
    }
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(
        receiver.received()[0].headers["x-fermion-webhook-secret"],
        "cli-secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_exits_1_when_a_delivery_fails_and_reports_unsubscribed_events() {
    let receiver = TestReceiver::start(|_| Reply::Status(500)).await;
    let dir = TempDir::new("cli-send-fail");
    let failed = send(
        dir.path(),
        &receiver.url(),
        &[
            "--event",
            "payment-failed",
            "--allow-private-networks",
            "--retry-schedule",
            "50ms,50ms",
        ],
    );
    assert_eq!(failed.status.code(), Some(1));
    let line = &lines(&failed)[0];
    assert_eq!(
        (line["status"].as_str(), line["attempts"].as_u64()),
        (Some("failed"), Some(3))
    );
    let unsubscribed = send(
        dir.path(),
        &receiver.url(),
        &[
            "--event",
            "payment-failed",
            "--events",
            "paid-course-sale",
            "--allow-private-networks",
        ],
    );
    assert_eq!(unsubscribed.status.code(), Some(0));
    assert_eq!(lines(&unsubscribed)[0]["status"], "not-subscribed");
    let blocked = send(dir.path(), &receiver.url(), &["--event", "payment-failed"]);
    assert_eq!(
        blocked.status.code(),
        Some(1),
        "loopback is refused without --allow-private-networks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_resumes_deliveries_left_pending_by_an_earlier_run() {
    let dir = TempDir::new("cli-resume");
    let down = TestReceiver::start(|_| Reply::Status(503)).await;
    // An earlier run whose retries were still pending when it ended.
    {
        let store = std::sync::Arc::new(FileLogStore::open(dir.path()).await.unwrap());
        let event = fermion_webhooks::WebhookEvent::new(fermion_webhooks::EventPayload::sample(
            fermion_webhooks::EventKind::FreeCourseEnrollment,
        ));
        let delivery =
            fermion_webhooks::store::Delivery::pending("send-cli", down.url(), event.timestamp);
        store
            .append(fermion_webhooks::store::StoredEvent::new(
                &event,
                vec![delivery],
            ))
            .await
            .unwrap();
    }
    let up = TestReceiver::ok().await;
    let output = send(
        dir.path(),
        &up.url(),
        &["--count", "0", "--allow-private-networks"],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(lines(&output)[0]["status"], "delivered");
    assert_eq!(up.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_retrigger_resends_the_stored_body_and_records_it() {
    let flaky_ok = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = flaky_ok.clone();
    let receiver = TestReceiver::start(move |_| {
        Reply::Status(if flag.load(std::sync::atomic::Ordering::SeqCst) {
            200
        } else {
            500
        })
    })
    .await;
    let dir = TempDir::new("cli-retrigger");
    let failed = send(
        dir.path(),
        &receiver.url(),
        &[
            "--event",
            "paid-course-sale",
            "--allow-private-networks",
            "--retry-schedule",
            "",
        ],
    );
    assert_eq!(failed.status.code(), Some(1));
    let id = lines(&failed)[0]["eventUniqueId"]
        .as_str()
        .unwrap()
        .to_owned();
    flaky_ok.store(true, std::sync::atomic::Ordering::SeqCst);
    let log_dir = dir.path().to_str().unwrap();
    let retriggered = run(
        "logs",
        &[
            "--log-dir",
            log_dir,
            "retrigger",
            &id,
            "--secret",
            "cli-secret",
            "--allow-private-networks",
        ],
    );
    assert_eq!(
        retriggered.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&retriggered.stderr)
    );
    let line = &lines(&retriggered)[0];
    assert_eq!(
        (line["status"].as_str(), line["attempts"].as_u64()),
        (Some("delivered"), Some(2))
    );
    let requests = receiver.received();
    assert_eq!(
        requests[0].body, requests[1].body,
        "the exact stored bytes again"
    );
    let store = FileLogStore::open_read_only(dir.path()).await.unwrap();
    let event = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        event.deliveries[0].attempts[1].trigger,
        fermion_webhooks::store::AttemptTrigger::ManualRetrigger
    );
    let missing_secret = run("logs", &["--log-dir", log_dir, "retrigger", &id]);
    assert_eq!(missing_secret.status.code(), Some(2));
}

#[test]
fn send_refuses_bad_arguments_with_exit_2() {
    let dir = TempDir::new("cli-bad");
    let log_dir = dir.path().to_str().unwrap();
    for args in [
        vec!["--secret", "s", "--event", "paid-course-sale"],
        vec!["--url", "http://x.example", "--event", "paid-course-sale"],
        vec![
            "--url",
            "ftp://x.example",
            "--secret",
            "s",
            "--event",
            "paid-course-sale",
        ],
        vec![
            "--url",
            "http://x.example",
            "--secret",
            "s",
            "--event",
            "refund",
        ],
        vec!["--url", "http://x.example", "--secret", "s"],
        vec![
            "--url",
            "http://x.example",
            "--secret",
            "s",
            "--event",
            "paid-course-sale",
            "--timeout",
            "soon",
        ],
    ] {
        let mut all = args.clone();
        all.extend(["--log-dir", log_dir]);
        let output = run("send", &all);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stderr).contains("usage: send"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_runs_the_whole_round_trip_and_exports_csv() {
    let output = run("quickstart", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("the receiver answered Some(401)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("re-triggered to accounting: now delivered"),
        "{stdout}"
    );
    let csv_path = stdout
        .lines()
        .find_map(|line| line.trim().split(" events to ").nth(1))
        .expect("the export path is printed");
    let csv = std::fs::read_to_string(csv_path).unwrap();
    assert_eq!(csv.lines().filter(|l| l.contains(",delivered,")).count(), 5);
    let log_dir = Path::new(csv_path).parent().unwrap();
    let store = FileLogStore::open_read_only(log_dir).await.unwrap();
    assert_eq!(
        store
            .query(&LogFilter::default(), None, 100)
            .await
            .unwrap()
            .events
            .len(),
        5
    );
    let _ = std::fs::remove_dir_all(log_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_sends_a_payload_file_as_is_and_refuses_a_bad_one() {
    let receiver = TestReceiver::ok().await;
    let dir = TempDir::new("cli-payload");
    let payload = r#"{
  "eventType": "paid-course-sale", "userId": "u1", "userFullname": "Ravi Kumar",
  "userEmail": "ravi@example.com", "userPhoneNumber": null, "courseSlug": "go-101",
  "courseName": "Go 101", "orderId": "o1", "amountInSmallestUnit": 99900, "currency": "INR",
  "couponCode": "DIWALI"
}"#;
    let file = dir.path().join("payload.json");
    std::fs::write(&file, payload).unwrap();
    let log_dir = dir.path().join("log");
    let output = send(
        &log_dir,
        &receiver.url(),
        &[
            "--payload",
            file.to_str().unwrap(),
            "--test",
            "--allow-private-networks",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body = String::from_utf8(receiver.received()[0].body.clone()).unwrap();
    assert!(
        body.ends_with(&format!(r#""isTestEvent":true,"payload":{payload}}}"#)),
        "{body}"
    );

    std::fs::write(&file, r#"{"eventType":"paid-course-sale","userId":"u1"}"#).unwrap();
    let bad = send(
        &log_dir,
        &receiver.url(),
        &["--payload", file.to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("payload.userFullname"));
}

#[test]
fn a_bad_or_unreachable_database_url_fails_at_once_with_one_line_and_exit_2() {
    let dir = TempDir::new("bad-urls");
    let not_a_directory = dir.path().join("file");
    std::fs::write(&not_a_directory, "").unwrap();
    let inside_a_file = format!("sqlite://{}/events.sqlite3", not_a_directory.display());
    for (tool, url) in [
        ("worker", "mysql://db.internal/webhooks"),
        ("worker", "postgres://nobody@127.0.0.1:1/webhooks"),
        ("worker", "sqlite://"),
        ("worker", inside_a_file.as_str()),
        ("logs", "postgres://nobody@127.0.0.1:1/webhooks"),
    ] {
        let start = std::time::Instant::now();
        let mut command = Command::new(example_binary(tool));
        command.args(["--database-url", url]);
        if tool == "logs" {
            command.arg("list");
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{tool} {url}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{tool} {url}: {stderr}");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{tool} {url} took {:?}",
            start.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_several_urls_delivers_every_event_to_each_and_fails_if_one_fails() {
    let crm = TestReceiver::ok().await;
    let books = TestReceiver::ok().await;
    let broken = TestReceiver::start(|_| Reply::Status(500)).await;
    let dir = TempDir::new("cli-send-several");
    let sale = ["--event", "paid-course-sale", "--count", "2"];
    let quick = ["--allow-private-networks", "--retry-schedule", "10ms"];
    let books_url = books.url();
    let args = [&["--url", books_url.as_str()][..], &sale, &quick].concat();
    let output = send(dir.path(), &crm.url(), &args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(lines(&output).len(), 2, "one line per event");
    assert_eq!((crm.received().len(), books.received().len()), (2, 2));

    let broken_url = broken.url();
    let args = [&["--url", broken_url.as_str()][..], &sale, &quick].concat();
    let output = send(dir.path(), &crm.url(), &args);
    assert_eq!(output.status.code(), Some(1), "one endpoint failed");
    assert_eq!(crm.received().len(), 4, "the healthy one got both");
    assert!(
        lines(&output).iter().all(|line| line["status"] == "failed"),
        "{:?}",
        lines(&output)
    );
}

/// Stops the child process when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(feature = "admin")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_serves_its_page_and_shows_what_send_adds_to_the_shared_log() {
    use std::io::BufRead;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = TempDir::new("cli-dashboard");
    let log_dir = dir.path().to_str().unwrap();
    let mut dashboard = KillOnDrop(
        Command::new(example_binary("dashboard"))
            .args(["--addr", "127.0.0.1:0", "--log-dir", log_dir])
            .args(["--admin-token", "dash-token-1f"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    let mut stdout = std::io::BufReader::new(dashboard.0.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    // Keep reading, as a terminal would.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let link = first.trim().strip_prefix("dashboard: ").expect(&first);
    assert!(
        !first.contains("dash-token-1f"),
        "a token given is not printed back"
    );
    let base = link.strip_suffix('/').expect(&first);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str, token: Option<&str>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let page = get("/", None).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("<h1>Webhooks</h1>"));
    assert_eq!(
        get("/endpoints", None).await.unwrap().status().as_u16(),
        401
    );
    let endpoints = get("/endpoints", Some("dash-token-1f")).await.unwrap();
    let endpoints = endpoints.text().await.unwrap();
    assert!(endpoints.contains("demo-receiver") && endpoints.contains("demo-failing"));

    // The demo events settle within seconds (the failing demo webhook retries after 1 s and
    // 2 s); `send` would otherwise resume the pending one, and report it failed.
    let started = Instant::now();
    loop {
        let settled = get("/events", Some("dash-token-1f")).await.unwrap();
        let settled: serde_json::Value =
            serde_json::from_str(&settled.text().await.unwrap()).unwrap();
        let events = settled["events"].as_array().unwrap();
        if events.len() == 4 && events.iter().all(|e| e["status"] != "pending") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{settled}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An event sent by `send` into the same log, for the dashboard's creator, shows up.
    let receiver = TestReceiver::ok().await;
    let sent = send(
        dir.path(),
        &receiver.url(),
        &[
            "--event",
            "paid-course-sale",
            "--owner",
            "local",
            "--allow-private-networks",
        ],
    );
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&sent.stdout),
        String::from_utf8_lossy(&sent.stderr)
    );
    let id = lines(&sent)[0]["eventUniqueId"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = Instant::now();
    loop {
        let events = get("/events?eventType=paid-course-sale", Some("dash-token-1f"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if events.contains(&id) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dashboard never showed {id}: {events}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = run("logs", &["--log-dir", log_dir, "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
}
