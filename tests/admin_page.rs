//! The dashboard page in headless Chromium, driven over WebDriver: a creator switches an event
//! off, presses the flask, opens and copies a body, re-triggers a failed event and downloads a
//! CSV, against the admin router on 127.0.0.1 over a file log. Screenshots go to
//! `target/screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without
//! `chromedriver` on the `PATH` these tests say so and pass, unless `FERMION_REQUIRE_BROWSER`
//! is set, as CI sets it.
#![cfg(unix)]

mod common;
mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::receiver::{Reply, TestReceiver};
use fantoccini::{Client, ClientBuilder, Locator};
use fermion_webhooks::admin::{self, Admin, BearerTokens};
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::store::{DeliveryState, LogFilter, Store};
use fermion_webhooks::{
    DispatchConfig, Dispatcher, EventKind, EventPayload, FileLogStore, HttpSender, RetrySchedule,
    WebhookEvent, WebhookSecret,
};
use serde_json::{Value, json};
use support::TempDir;

const TOKEN: &str = "asha-browser-token-5d1e";

/// One browser at a time: two cores do not run several Chromiums quickly.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The admin router at the root of 127.0.0.1:port over a file log, for creator "asha".
struct Dashboard {
    base: String,
    store: Arc<dyn Store>,
    dispatcher: Dispatcher,
    _dir: TempDir,
}

impl Dashboard {
    async fn start(label: &str) -> Self {
        let dir = TempDir::new(label);
        let store: Arc<dyn Store> = Arc::new(FileLogStore::open(dir.path()).await.unwrap());
        let sender = HttpSender::builder()
            .allow_private_networks(true)
            .build()
            .unwrap();
        let mut config = DispatchConfig::default();
        config.poll_interval = Duration::from_millis(20);
        // No retries: a failed attempt fails the delivery, for the page to re-trigger.
        config.retry = RetrySchedule::fixed([]);
        let dispatcher = Dispatcher::start_with_stored_endpoints(
            store.clone(),
            Arc::new(sender),
            config,
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let tokens = BearerTokens::new().token(&WebhookSecret::new(TOKEN).unwrap(), "asha");
        let admin = Admin::new(dispatcher.clone(), Arc::new(tokens)).allow_private_networks(true);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, admin::router(admin)).await });
        Self {
            base,
            store,
            dispatcher,
            _dir: dir,
        }
    }

    /// The page, signed in through the address's fragment.
    fn page(&self) -> String {
        format!("{}/#token={TOKEN}", self.base)
    }

    /// Adds a webhook to `url` through the API; its id.
    async fn add_endpoint(&self, url: &str) -> String {
        let created = self
            .call(
                reqwest::Method::POST,
                "/endpoints",
                Some(json!({ "url": url })),
            )
            .await;
        created["endpoint"]["id"].as_str().unwrap().to_owned()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut request = client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null)
    }

    async fn status_of(&self, id: &str) -> DeliveryState {
        self.store.get(id).await.unwrap().unwrap().status()
    }
}

/// Headless Chromium under chromedriver, downloading into `downloads`.
struct Browser {
    client: Client,
    driver: Child,
}

impl Browser {
    async fn start(downloads: &Path) -> Option<Self> {
        let Some(chromedriver) = find_on_path("chromedriver") else {
            assert!(
                std::env::var_os("FERMION_REQUIRE_BROWSER").is_none(),
                "chromedriver is not on the PATH; install Debian's chromium and chromium-driver"
            );
            eprintln!("skipped: chromedriver is not on the PATH (apt-get install chromium-driver)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that the browsers it starts go with it, even after a panic.
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,1400", "--no-first-run", "--no-proxy-server"],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
            },
        });
        if Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        let started = Instant::now();
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let attempt = ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match attempt {
                Ok(client) => return Some(Self { client, driver }),
                Err(error) if started.elapsed() > Duration::from_secs(20) => {
                    panic!("chromedriver did not start a browser: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Opens `url` and waits until the page has loaded its webhooks and events.
    async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
        self.ready().await;
    }

    async fn ready(&self) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("body[data-ready=yes]"))
            .await
            .expect("the page loads its webhooks and events");
    }

    async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn text(&self, css: &str) -> String {
        let element = self.client.find(Locator::Css(css)).await.unwrap();
        element.text().await.unwrap()
    }

    /// Waits until the status line says `expected`.
    async fn says(&self, expected: &str) {
        eventually(&format!("the page says {expected:?}"), || async {
            self.text("#status").await.contains(expected)
        })
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-9", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Polls `check` until it holds, for up to 10 seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_switched_off_stays_off_after_a_reload() {
    let _one = ONE_BROWSER.lock().await;
    let downloads = TempDir::new("page-switch-downloads");
    let Some(browser) = Browser::start(downloads.path()).await else {
        return;
    };
    let dashboard = Dashboard::start("page-switch").await;
    let id = dashboard
        .add_endpoint("https://crm.example.com/hooks")
        .await;
    browser.open(&dashboard.page()).await;

    let switch = format!("input[data-endpoint='{id}'][data-kind='paid-course-sale']");
    let element = browser.client.find(Locator::Css(&switch)).await.unwrap();
    assert!(
        element.is_selected().await.unwrap(),
        "every event starts on"
    );
    browser.click(&switch).await;
    browser.says("Switched off: Paid course sale").await;

    browser.client.refresh().await.unwrap();
    browser.ready().await;
    let element = browser.client.find(Locator::Css(&switch)).await.unwrap();
    assert!(
        !element.is_selected().await.unwrap(),
        "still off after a reload"
    );
    let other = format!("input[data-endpoint='{id}'][data-kind='payment-failed']");
    let other = browser.client.find(Locator::Css(&other)).await.unwrap();
    assert!(
        other.is_selected().await.unwrap(),
        "the other switches are untouched"
    );
    let stored = dashboard
        .call(reqwest::Method::GET, &format!("/endpoints/{id}"), None)
        .await;
    assert_eq!(
        stored["events"],
        json!([
            "free-course-enrollment",
            "payment-failed",
            "payment-initiated-not-completed"
        ])
    );
    browser.screenshot("dashboard-webhooks.png").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_added_in_the_page_shows_its_secret_once_rotates_it_and_turns_signing_on_and_off()
{
    let _one = ONE_BROWSER.lock().await;
    let downloads = TempDir::new("page-add-downloads");
    let Some(browser) = Browser::start(downloads.path()).await else {
        return;
    };
    let dashboard = Dashboard::start("page-add").await;
    browser.open(&dashboard.page()).await;

    let url = browser.client.find(Locator::Css("#new-url")).await.unwrap();
    url.send_keys("https://crm.example.com/fermion")
        .await
        .unwrap();
    browser.click("#new-payment-failed").await;
    browser.click("#add-endpoint button[type=submit]").await;
    browser.says("Webhook added").await;
    let secret = browser.text("#secret-value").await;
    assert!(
        secret.len() >= 32,
        "the generated secret is shown: {secret:?}"
    );
    let listed = dashboard
        .call(reqwest::Method::GET, "/endpoints", None)
        .await;
    assert_eq!(listed[0]["url"], "https://crm.example.com/fermion");
    assert_eq!(
        listed[0]["events"],
        json!([
            "free-course-enrollment",
            "paid-course-sale",
            "payment-initiated-not-completed"
        ]),
        "the unticked event is off"
    );
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let stored = dashboard.dispatcher.endpoints();
    assert_eq!(
        stored[0].secret.expose_secret(),
        secret,
        "the shown secret is the one used"
    );

    browser.click("#secret-done").await;
    browser.client.refresh().await.unwrap();
    browser.ready().await;
    let html = browser.client.source().await.unwrap();
    assert!(!html.contains(&secret), "shown once: not after a reload");

    browser.click(&format!("button[data-rotate='{id}']")).await;
    browser.says("New secret made").await;
    let rotated = browser.text("#secret-value").await;
    assert_ne!(rotated, secret);
    assert_eq!(
        dashboard.dispatcher.endpoints()[0].secret.expose_secret(),
        rotated
    );

    // Signing is switched on from the page; its key is shown once too.
    browser.click(&format!("button[data-sign='{id}']")).await;
    browser.says("Deliveries are signed").await;
    let key = browser.text("#secret-value").await;
    assert!(key.starts_with("whsec_"), "{key}");
    let stored = dashboard.dispatcher.endpoints();
    assert_eq!(stored[0].signing_secrets[0].expose_secret(), key);
    browser.click(&format!("button[data-unsign='{id}']")).await;
    browser.says("Deliveries are no longer signed").await;
    assert!(
        dashboard.dispatcher.endpoints()[0]
            .signing_secrets
            .is_empty()
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_has_a_label_and_the_page_fits_a_phone() {
    let _one = ONE_BROWSER.lock().await;
    let downloads = TempDir::new("page-phone-downloads");
    let Some(browser) = Browser::start(downloads.path()).await else {
        return;
    };
    let dashboard = Dashboard::start("page-phone").await;
    let receiver = TestReceiver::ok().await;
    let id = dashboard.add_endpoint(&receiver.url()).await;
    dashboard
        .call(
            reqwest::Method::POST,
            &format!("/endpoints/{id}/test"),
            Some(json!({ "eventType": "paid-course-sale" })),
        )
        .await;
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.open(&dashboard.page()).await;

    let unlabelled: Value = browser
        .client
        .execute(
            "return [...document.querySelectorAll('input, select, button')]
               .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
                              && !c.textContent.trim())
               .map((c) => c.outerHTML)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        unlabelled,
        json!([]),
        "every control is named for a screen reader"
    );
    let overflow: Value = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "no sideways scrolling at 390 px: {overflow}"
    );

    // The keyboard alone reaches a flask and presses it.
    let flask = format!("button[data-test='free-course-enrollment'][data-endpoint='{id}']");
    let mut tabs = 0;
    loop {
        let on_flask: Value = browser
            .client
            .execute(
                "return document.activeElement === document.querySelector(arguments[0])",
                vec![json!(flask)],
            )
            .await
            .unwrap();
        if on_flask == json!(true) {
            break;
        }
        tabs += 1;
        assert!(tabs < 60, "Tab never reached the flask");
        let focused = browser.client.active_element().await.unwrap();
        focused.send_keys("\u{E004}").await.unwrap(); // Tab
    }
    let focused = browser.client.active_element().await.unwrap();
    focused.send_keys("\u{E007}").await.unwrap(); // Enter
    eventually("the test event arrives", || async {
        receiver.received().len() == 2
    })
    .await;
    browser.screenshot("dashboard-phone.png").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flask_sends_a_test_event_that_arrives_and_shows_in_the_log() {
    let _one = ONE_BROWSER.lock().await;
    let downloads = TempDir::new("page-flask-downloads");
    let Some(browser) = Browser::start(downloads.path()).await else {
        return;
    };
    let dashboard = Dashboard::start("page-flask").await;
    let receiver = TestReceiver::ok().await;
    let id = dashboard.add_endpoint(&receiver.url()).await;
    browser.open(&dashboard.page()).await;

    browser
        .click(&format!(
            "button[data-test='payment-failed'][data-endpoint='{id}']"
        ))
        .await;
    eventually("the receiver gets the test event", || async {
        receiver.received().len() == 1
    })
    .await;
    let body: Value = serde_json::from_slice(&receiver.received()[0].body).unwrap();
    assert_eq!(body["isTestEvent"], true);
    assert_eq!(body["payload"]["eventType"], "payment-failed");
    let event = body["eventUniqueId"].as_str().unwrap().to_owned();
    browser.says(&format!("Test event {event} sent")).await;

    let status = format!("tr[data-event='{event}'] [data-status]");
    eventually("the log shows it delivered", || async {
        browser.click("#filters button[type=submit]").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        match browser.client.find(Locator::Css(&status)).await {
            Ok(cell) => cell.text().await.unwrap() == "delivered",
            Err(_) => false,
        }
    })
    .await;
    let row = browser.text(&format!("tr[data-event='{event}']")).await;
    assert!(
        row.contains("payment-failed") && row.contains("Test"),
        "{row}"
    );
    browser.screenshot("dashboard-log.png").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_event_shows_hostile_values_as_text_runs_nothing_and_copies_exactly() {
    let _one = ONE_BROWSER.lock().await;
    let downloads = TempDir::new("page-body-downloads");
    let Some(browser) = Browser::start(downloads.path()).await else {
        return;
    };
    let dashboard = Dashboard::start("page-body").await;
    // The receiver's answer is shown too, and is as hostile.
    let answer = "<img src=y onerror=alert(2)>";
    let receiver = TestReceiver::start(move |_| Reply::Body(200, answer)).await;
    dashboard.add_endpoint(&receiver.url()).await;
    let hostile = "<img src=x onerror=alert(1)>";
    let mut event: Value = serde_json::from_str(
        &WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale)).to_json(),
    )
    .unwrap();
    event["payload"]["userFullname"] = json!(hostile);
    let emitted = dashboard
        .dispatcher
        .emit_json(event.to_string())
        .await
        .unwrap();
    let id = emitted.event_unique_id;
    browser.open(&dashboard.page()).await;

    browser.click(&format!("button[data-open='{id}']")).await;
    eventually("the body is shown", || async {
        browser.text("#body").await.contains(hostile)
    })
    .await;
    eventually("the answer is shown", || async {
        browser.text("#attempts").await.contains(answer)
    })
    .await;
    let images: Value = browser
        .client
        .execute("return document.querySelectorAll('img').length", vec![])
        .await
        .unwrap();
    assert_eq!(images, json!(0), "the value was not turned into markup");
    assert!(
        browser.client.get_alert_text().await.is_err(),
        "no script ran: no alert is open"
    );
    browser.screenshot("dashboard-event.png").await;

    browser.click("#copy-body").await;
    browser.says("Body copied").await;
    browser
        .client
        .execute(
            "const area = document.createElement('textarea'); area.id = 'pasted';
             document.body.append(area); area.focus();",
            vec![],
        )
        .await
        .unwrap();
    let area = browser.client.find(Locator::Css("#pasted")).await.unwrap();
    // Control, v, then release every key.
    area.send_keys("\u{E009}v\u{E000}").await.unwrap();
    let pasted = area.prop("value").await.unwrap().unwrap_or_default();
    let stored = dashboard.store.get(&id).await.unwrap().unwrap().body;
    assert_eq!(pasted, stored, "the copy is the exact bytes sent");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_event_is_re_triggered_from_the_page_and_delivered() {
    let _one = ONE_BROWSER.lock().await;
    let downloads = TempDir::new("page-retrigger-downloads");
    let Some(browser) = Browser::start(downloads.path()).await else {
        return;
    };
    let dashboard = Dashboard::start("page-retrigger").await;
    // The first request fails; the re-trigger succeeds.
    let receiver = TestReceiver::start(|n| Reply::Status(if n == 0 { 503 } else { 200 })).await;
    dashboard.add_endpoint(&receiver.url()).await;
    let id = dashboard
        .dispatcher
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap()
        .event_unique_id;
    eventually("the delivery fails", || async {
        dashboard.status_of(&id).await == DeliveryState::Failed
    })
    .await;
    browser.open(&dashboard.page()).await;

    // Only failed events.
    browser
        .client
        .find(Locator::Css("#filter-status option[value=failed]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.click("#filters button[type=submit]").await;
    eventually("the failed event is listed", || async {
        browser
            .text("#events tbody")
            .await
            .contains("paid-course-sale")
    })
    .await;
    browser.click(&format!("button[data-open='{id}']")).await;
    eventually("its attempt shows the 503", || async {
        browser.text("#attempts").await.contains("HTTP 503")
    })
    .await;
    browser.click("#retrigger").await;
    browser.says("Re-triggered: delivered (HTTP 200)").await;
    assert_eq!(dashboard.status_of(&id).await, DeliveryState::Delivered);
    assert_eq!(receiver.received().len(), 2);
    eventually("the attempts show the re-trigger", || async {
        browser.text("#attempts").await.contains("manual-retrigger")
    })
    .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_form_downloads_what_export_csv_writes() {
    let _one = ONE_BROWSER.lock().await;
    let downloads = TempDir::new("page-export-downloads");
    let Some(browser) = Browser::start(downloads.path()).await else {
        return;
    };
    let dashboard = Dashboard::start("page-export").await;
    let receiver = TestReceiver::ok().await;
    let id = dashboard.add_endpoint(&receiver.url()).await;
    for kind in [
        "paid-course-sale",
        "payment-failed",
        "free-course-enrollment",
    ] {
        dashboard
            .call(
                reqwest::Method::POST,
                &format!("/endpoints/{id}/test"),
                Some(json!({ "eventType": kind })),
            )
            .await;
    }
    eventually("three deliveries", || async {
        receiver.received().len() == 3
    })
    .await;
    browser.open(&dashboard.page()).await;

    browser.click("#export-payment-failed").await;
    browser.click("#export button[type=submit]").await;
    let mut downloaded = None;
    eventually("the CSV is downloaded", || {
        let found = std::fs::read_dir(downloads.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|e| e == "csv"));
        downloaded = found.clone();
        async move { found.is_some() }
    })
    .await;
    let csv = std::fs::read_to_string(downloaded.unwrap()).unwrap();

    let filter = LogFilter::default().to_endpoints([id]).kinds([
        EventKind::FreeCourseEnrollment,
        EventKind::PaidCourseSale,
        EventKind::PaymentInitiatedNotCompleted,
    ]);
    let mut direct = Vec::new();
    let rows = fermion_webhooks::export_csv(
        &*dashboard.store,
        &filter,
        &mut direct,
        &Default::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(rows, 2, "payment-failed was left out");
    assert_eq!(
        csv,
        String::from_utf8(direct).unwrap(),
        "the same bytes as export_csv"
    );
    browser.close().await;
}
