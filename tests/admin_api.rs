//! The admin API through a real server on 127.0.0.1: authorization, tenants kept apart,
//! endpoints added, listed, changed and removed, secrets shown once, test events sent, and
//! bad input answered with a typed JSON error.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::receiver::TestReceiver;
use fermion_webhooks::admin::{self, Admin, Authorize, BearerTokens};
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::store::Store;
use fermion_webhooks::{
    DispatchConfig, Dispatcher, HttpSender, MemoryLogStore, SECRET_HEADER, WebhookSecret,
};
use serde_json::{Value, json};

const ASHA: &str = "asha-token-1b9f";
const RAVI: &str = "ravi-token-77c2";

/// The API over a memory log, mounted under `/webhooks` on 127.0.0.1 and authorized by
/// `authorize`: its base URL, and the log.
async fn serve(authorize: Arc<dyn Authorize>) -> (String, Arc<dyn Store>) {
    serve_with(authorize, |admin| admin.allow_private_networks(true)).await
}

/// As [`serve`], with the admin configured by `configure`.
async fn serve_with(
    authorize: Arc<dyn Authorize>,
    configure: impl FnOnce(Admin) -> Admin,
) -> (String, Arc<dyn Store>) {
    let (admin, store) = admin_over_memory(authorize).await;
    let app = axum::Router::new().nest("/webhooks", admin::router(configure(admin)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/webhooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, store)
}

/// The admin over a dispatcher on a memory log, and the log.
async fn admin_over_memory(authorize: Arc<dyn Authorize>) -> (Admin, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryLogStore::new());
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .build()
        .unwrap();
    let mut config = DispatchConfig::default();
    config.poll_interval = Duration::from_millis(20);
    let dispatcher = Dispatcher::start_with_stored_endpoints(
        store.clone(),
        Arc::new(sender),
        config,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    (Admin::new(dispatcher, authorize), store)
}

/// Two creators, each with a bearer token.
fn two_creators() -> Arc<dyn Authorize> {
    let tokens = BearerTokens::new()
        .token(&WebhookSecret::new(ASHA).unwrap(), "asha")
        .token(&WebhookSecret::new(RAVI).unwrap(), "ravi");
    Arc::new(tokens)
}

/// The API for two creators; its base URL.
async fn server() -> String {
    serve(two_creators()).await.0
}

/// Sends `method path` as `token` with an optional JSON body; the status and the body.
async fn call(
    base: &str,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Adds an endpoint as `token` (which must succeed); the answer, with the secret shown once.
async fn add_endpoint(base: &str, token: &str, endpoint: Value) -> Value {
    let (status, created) = call(
        base,
        Some(token),
        reqwest::Method::POST,
        "/endpoints",
        Some(endpoint),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_with_a_json_error() {
    let base = server().await;
    for token in [None, Some("wrong-token")] {
        let (status, body) = call(&base, token, reqwest::Method::GET, "/endpoints", None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(body["error"]["message"].as_str().unwrap().contains("token"));
    }
}

#[tokio::test]
async fn a_creator_adds_lists_changes_and_removes_only_their_own_endpoints() {
    let base = server().await;
    let (status, created) = call(
        &base,
        Some(ASHA),
        reqwest::Method::POST,
        "/endpoints",
        Some(json!({"url": "https://crm.example.com/hooks", "events": ["paid-course-sale"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32, "a generated secret, shown once");
    assert_eq!(created["endpoint"]["events"], json!(["paid-course-sale"]));
    assert_eq!(created["endpoint"]["enabled"], true);

    let (status, listed) = call(&base, Some(ASHA), reqwest::Method::GET, "/endpoints", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["url"], "https://crm.example.com/hooks");
    assert!(!listed.to_string().contains(&secret), "no secret in a list");

    // Another creator sees none of it, and cannot touch it.
    let (_, theirs) = call(&base, Some(RAVI), reqwest::Method::GET, "/endpoints", None).await;
    assert_eq!(theirs, json!([]));
    let path = format!("/endpoints/{id}");
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (status, body) = call(&base, Some(RAVI), method, &path, None).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
    }

    let (status, changed) = call(
        &base,
        Some(ASHA),
        reqwest::Method::PATCH,
        &path,
        Some(json!({"enabled": false, "events": ["payment-failed", "paid-course-sale"]})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["enabled"], false);
    assert_eq!(
        changed["events"],
        json!(["paid-course-sale", "payment-failed"])
    );
    let (_, shown) = call(&base, Some(ASHA), reqwest::Method::GET, &path, None).await;
    assert_eq!(shown, changed, "the change persists");
    assert!(!shown.to_string().contains(&secret));

    let (status, _) = call(&base, Some(ASHA), reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&base, Some(ASHA), reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_input_is_answered_with_its_status_and_a_typed_json_error() {
    let base = server().await;
    let cases = [
        (json!({"url": "ftp://files.example.com/"}), 422),
        (
            json!({"url": "https://x.example.com/", "color": "red"}),
            422,
        ),
        (
            json!({"url": "https://x.example.com/", "events": ["no-such-event"]}),
            422,
        ),
        (json!({"events": []}), 422),
    ];
    for (body, expected) in cases {
        let (status, answer) = call(
            &base,
            Some(ASHA),
            reqwest::Method::POST,
            "/endpoints",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, expected, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], "invalid", "{answer}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    // Not JSON at all.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .post(format!("{base}/endpoints"))
        .bearer_auth(ASHA)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["error"]["code"], "bad_request");
}

#[tokio::test]
async fn the_flask_sends_a_test_event_and_a_rotated_secret_is_used_from_then_on() {
    let base = server().await;
    let receiver = TestReceiver::ok().await;
    let created = add_endpoint(
        &base,
        ASHA,
        json!({"url": receiver.url(), "events": ["paid-course-sale"]}),
    )
    .await;
    let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
    let first_secret = created["secret"].as_str().unwrap().to_owned();
    let test = format!("/endpoints/{id}/test");

    // Not subscribed to payment-failed, but a test goes anyway.
    let (status, sent) = call(
        &base,
        Some(ASHA),
        reqwest::Method::POST,
        &test,
        Some(json!({"eventType": "payment-failed"})),
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.received().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the test event arrives"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let arrived = &receiver.received()[0];
    let event: Value = serde_json::from_slice(&arrived.body).unwrap();
    assert_eq!(event["eventUniqueId"], sent["eventUniqueId"]);
    assert_eq!(event["isTestEvent"], true);
    assert_eq!(arrived.headers[SECRET_HEADER], first_secret.as_str());

    let (status, rotated) = call(
        &base,
        Some(ASHA),
        reqwest::Method::POST,
        &format!("/endpoints/{id}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let second_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(second_secret, first_secret);
    call(
        &base,
        Some(ASHA),
        reqwest::Method::POST,
        &test,
        Some(json!({"eventType": "paid-course-sale"})),
    )
    .await;
    while receiver.received().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second test arrives"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        receiver.received()[1].headers[SECRET_HEADER],
        second_secret.as_str()
    );

    // Disabled: the flask is refused with 409.
    call(
        &base,
        Some(ASHA),
        reqwest::Method::PATCH,
        &format!("/endpoints/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    let (status, refused) = call(
        &base,
        Some(ASHA),
        reqwest::Method::POST,
        &test,
        Some(json!({"eventType": "paid-course-sale"})),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "conflict");
}

/// Waits until `receiver` has `count` requests.
async fn received(receiver: &TestReceiver, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.received().len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} requests arrive"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_log_shows_a_creator_only_their_events_with_exact_bodies_attempts_and_retriggers() {
    let base = server().await;
    let failing_once =
        TestReceiver::start(|n| common::receiver::Reply::Status(if n == 0 { 500 } else { 200 }))
            .await;
    let other = TestReceiver::ok().await;
    let mut sent = Vec::new();
    for (token, url) in [(ASHA, failing_once.url()), (RAVI, other.url())] {
        let created = add_endpoint(&base, token, json!({ "url": url })).await;
        let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
        let (_, test) = call(
            &base,
            Some(token),
            reqwest::Method::POST,
            &format!("/endpoints/{id}/test"),
            Some(json!({"eventType": "paid-course-sale"})),
        )
        .await;
        sent.push(test["eventUniqueId"].as_str().unwrap().to_owned());
    }
    received(&failing_once, 1).await;
    received(&other, 1).await;
    let asha_event = &sent[0];

    // Each sees their own event only.
    let (status, page) = call(&base, Some(ASHA), reqwest::Method::GET, "/events", None).await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["eventUniqueId"], asha_event.as_str());
    assert_eq!(events[0]["eventType"], "paid-course-sale");
    assert_eq!(events[0]["isTestEvent"], true);
    let (_, theirs) = call(&base, Some(RAVI), reqwest::Method::GET, "/events", None).await;
    assert_eq!(theirs["events"][0]["eventUniqueId"], sent[1].as_str());
    let path = format!("/events/{asha_event}");
    let (status, _) = call(&base, Some(RAVI), reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 404, "another creator's event is not found");

    // The exact bytes sent, for "copy".
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .get(format!("{base}{path}/body"))
        .bearer_auth(ASHA)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&bytes[..], &failing_once.received()[0].body[..]);

    // Its attempt: the 500, with the URL it went to.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let attempts = loop {
        let (_, attempts) = call(
            &base,
            Some(ASHA),
            reqwest::Method::GET,
            &format!("{path}/attempts"),
            None,
        )
        .await;
        if !attempts.as_array().unwrap().is_empty() {
            break attempts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the attempt is recorded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(attempts[0]["httpStatus"], 500, "{attempts}");
    assert_eq!(attempts[0]["url"], failing_once.url().as_str());

    // Re-triggered: the same bytes again, delivered now.
    let (status, retriggered) = call(
        &base,
        Some(ASHA),
        reqwest::Method::POST,
        &format!("{path}/retrigger"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{retriggered}");
    assert_eq!(retriggered[0]["status"], "delivered", "{retriggered}");
    assert_eq!(retriggered[0]["httpStatus"], 200);
    assert_eq!(
        failing_once.received()[1].body,
        failing_once.received()[0].body
    );
    let (_, delivered) = call(
        &base,
        Some(ASHA),
        reqwest::Method::GET,
        "/events?status=delivered&eventType=paid-course-sale,payment-failed&test=true",
        None,
    )
    .await;
    assert_eq!(
        delivered["events"].as_array().unwrap().len(),
        1,
        "{delivered}"
    );

    for bad in [
        "/events?eventType=nope",
        "/events?from=yesterday",
        "/events?colour=red",
    ] {
        let (status, answer) = call(&base, Some(ASHA), reqwest::Method::GET, bad, None).await;
        assert_eq!(status, 422, "{bad}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid");
    }
}

#[tokio::test]
async fn an_export_downloads_the_creators_events_as_export_csv_writes_them() {
    let (base, store) = serve(two_creators()).await;

    let receiver = TestReceiver::ok().await;
    let created = add_endpoint(&base, ASHA, json!({ "url": receiver.url() })).await;
    let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
    for kind in ["paid-course-sale", "payment-failed", "paid-course-sale"] {
        call(
            &base,
            Some(ASHA),
            reqwest::Method::POST,
            &format!("/endpoints/{id}/test"),
            Some(json!({ "eventType": kind })),
        )
        .await;
    }
    received(&receiver, 3).await;

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let download = |token: &'static str, query: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let response = client
                .get(format!("{base}/export{query}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let headers = response.headers().clone();
            (headers, response.text().await.unwrap())
        }
    };
    let (headers, csv) = download(ASHA, "?eventType=paid-course-sale").await;
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    let filter = fermion_webhooks::store::LogFilter::default()
        .to_endpoints([id.clone()])
        .kinds([fermion_webhooks::EventKind::PaidCourseSale]);
    let mut direct = Vec::new();
    let rows = fermion_webhooks::export_csv(
        &*store,
        &filter,
        &mut direct,
        &Default::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(rows, 2);
    assert_eq!(
        csv,
        String::from_utf8(direct).unwrap(),
        "the same as export_csv"
    );

    let (headers, jsonl) = download(ASHA, "?format=jsonl").await;
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(jsonl.lines().count(), 3);
    // Another creator's download holds the header row only.
    let (_, theirs) = download(RAVI, "").await;
    assert_eq!(theirs.lines().count(), 1, "{theirs}");
    let (headers, _) = download(ASHA, "?format=xlsx").await;
    assert!(headers["content-type"].to_str().unwrap().contains("json"));
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let base = server().await;
    let (status, document) = call(&base, None, reqwest::Method::GET, "/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method != "parameters" {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    let mut served = vec![
        "GET /endpoints",
        "POST /endpoints",
        "GET /endpoints/{id}",
        "PATCH /endpoints/{id}",
        "DELETE /endpoints/{id}",
        "POST /endpoints/{id}/rotate-secret",
        "POST /endpoints/{id}/test",
        "POST /endpoints/{id}/signing-secret",
        "DELETE /endpoints/{id}/signing-secret",
        "GET /events",
        "GET /events/{id}",
        "GET /events/{id}/body",
        "GET /events/{id}/attempts",
        "POST /events/{id}/retrigger",
        "POST /retrigger-failed",
        "GET /export",
        "GET /openapi.json",
        "GET /",
    ];
    served.sort();
    assert_eq!(documented, served);
    // Each documented route is one the router serves: a request reaches its handler (which
    // answers in JSON, whatever it thinks of the request), not the router's empty 404 or 405.
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        let method: reqwest::Method = method.parse().unwrap();
        // Nested under a prefix, the page's `/` is the prefix itself.
        let path = path.replace("{id}", "no-such-id");
        let path = if path == "/" { String::new() } else { path };
        let (status, body) = call(&base, Some(ASHA), method, &path, Some(json!({}))).await;
        assert_ne!(status, 405, "{route}");
        assert!(
            status != 404 || body["error"]["code"] == "not_found",
            "{route} is not served: {status} {body}"
        );
    }
    let (status, _) = call(&base, Some(ASHA), reqwest::Method::PUT, "/endpoints", None).await;
    assert_eq!(status, 405, "what is not documented is not served");
}

#[tokio::test]
async fn the_open_development_mode_is_named_as_such_and_acts_for_its_one_tenant() {
    let open = admin::UnauthenticatedForLocalDevelopment::acting_for("me");
    let (base, _) = serve(Arc::new(open)).await;
    let (status, created) = call(
        &base,
        None,
        reqwest::Method::POST,
        "/endpoints",
        Some(json!({"url": "https://crm.example.com/hooks"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (_, listed) = call(&base, None, reqwest::Method::GET, "/endpoints", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn endpoint_urls_on_loopback_or_private_addresses_are_refused_unless_allowed() {
    let (base, _) = serve_with(two_creators(), |admin| admin).await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.7/hook",
        "http://0x7f.1/hook",
    ] {
        let (status, answer) = call(
            &base,
            Some(ASHA),
            reqwest::Method::POST,
            "/endpoints",
            Some(json!({ "url": url })),
        )
        .await;
        assert_eq!(status, 422, "{url} → {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("private address")
        );
    }
    let (status, created) = call(
        &base,
        Some(ASHA),
        reqwest::Method::POST,
        "/endpoints",
        Some(json!({"url": "https://crm.example.com/hooks"})),
    )
    .await;
    assert_eq!(status, 201);
    let path = format!("/endpoints/{}", created["endpoint"]["id"].as_str().unwrap());
    let (status, _) = call(
        &base,
        Some(ASHA),
        reqwest::Method::PATCH,
        &path,
        Some(json!({"url": "http://192.168.1.2/"})),
    )
    .await;
    assert_eq!(status, 422, "a change to a private URL is refused too");
}

#[tokio::test]
async fn a_change_sent_by_another_sites_page_is_refused_and_the_pages_own_passes() {
    let base = server().await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |site: &'static str, origin: &'static str| {
        client
            .post(format!("{base}/endpoints"))
            .bearer_auth(ASHA)
            .header("sec-fetch-site", site)
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(json!({"url": "https://crm.example.com/hooks"}).to_string())
            .send()
    };
    let forged = post("cross-site", "https://evil.example").await.unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let answer: Value = serde_json::from_str(&forged.text().await.unwrap()).unwrap();
    assert_eq!(answer["error"]["code"], "forbidden");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cross-origin")
    );
    let (_, listed) = call(&base, Some(ASHA), reqwest::Method::GET, "/endpoints", None).await;
    assert_eq!(listed, json!([]), "the forged request changed nothing");

    let own = post("same-origin", "http://127.0.0.1").await.unwrap();
    assert_eq!(own.status().as_u16(), 201);
    // Reads are not changes: another site's page may not read them (no CORS), but they pass.
    let read = client
        .get(format!("{base}/endpoints"))
        .bearer_auth(ASHA)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
}

#[tokio::test]
async fn the_page_is_served_with_a_policy_that_runs_only_its_own_script_and_no_answer_is_cached() {
    let base = server().await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // Mounted under /webhooks, the page is at /webhooks.
    let page = client.get(&base).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let headers = page.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'sha256-"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("<h1>Webhooks</h1>"));
    assert!(!html.contains("src=\"http"), "nothing loads from elsewhere");

    let api = client
        .get(format!("{base}/endpoints"))
        .bearer_auth(ASHA)
        .send()
        .await
        .unwrap();
    assert_eq!(api.headers()["cache-control"], "no-store");
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn as_a_tower_service_under_any_prefix_it_trusts_only_the_origins_it_is_told() {
    use tower::ServiceExt;
    let (admin, _) = admin_over_memory(two_creators()).await;
    let app = axum::Router::new().nest(
        "/creators/settings/webhooks",
        admin::router(admin.trust_origin("https://app.example")),
    );
    let post_from = |origin: &str| {
        axum::http::Request::post("/creators/settings/webhooks/endpoints")
            .header("authorization", format!("Bearer {ASHA}"))
            .header("host", "api.example")
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                json!({"url": "https://crm.example.com/hooks"}).to_string(),
            ))
            .unwrap()
    };
    for (origin, expected) in [
        ("https://evil.example", 403),
        ("https://api.example", 201),
        ("https://app.example", 201),
    ] {
        let answer = app.clone().oneshot(post_from(origin)).await.unwrap();
        assert_eq!(answer.status().as_u16(), expected, "from {origin}");
    }

    let page = axum::http::Request::get("/creators/settings/webhooks")
        .body(axum::body::Body::empty())
        .unwrap();
    let page = app.oneshot(page).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
}

#[tokio::test]
async fn signing_is_switched_on_rotated_with_the_previous_key_kept_and_switched_off() {
    let base = server().await;
    let receiver = TestReceiver::ok().await;
    let created = add_endpoint(&base, ASHA, json!({ "url": receiver.url() })).await;
    assert_eq!(created["endpoint"]["signed"], false);
    let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
    let signing = format!("/endpoints/{id}/signing-secret");
    let test_event = || async {
        call(
            &base,
            Some(ASHA),
            reqwest::Method::POST,
            &format!("/endpoints/{id}/test"),
            Some(json!({"eventType": "paid-course-sale"})),
        )
        .await
    };
    let verifies = |key: &str, request: &common::receiver::Received| {
        let key = fermion_webhooks::SigningSecret::new(key).unwrap();
        fermion_webhooks::Receiver::signed(key)
            .build()
            .receive(&request.headers, &request.body)
            .is_ok()
    };

    let (status, first) = call(&base, Some(ASHA), reqwest::Method::POST, &signing, None).await;
    assert_eq!(status, 200, "{first}");
    let first = first["signingSecret"].as_str().unwrap().to_owned();
    assert!(first.starts_with("whsec_"));
    test_event().await;
    received(&receiver, 1).await;
    assert!(verifies(&first, &receiver.received()[0]));

    // Rotated: the new key and the previous one both sign, while receivers switch.
    let (_, second) = call(
        &base,
        Some(ASHA),
        reqwest::Method::POST,
        &signing,
        Some(json!({})),
    )
    .await;
    assert_eq!(second["keys"], 2);
    let second = second["signingSecret"].as_str().unwrap().to_owned();
    test_event().await;
    received(&receiver, 2).await;
    let request = &receiver.received()[1];
    assert!(verifies(&first, request) && verifies(&second, request));

    let (_, listed) = call(&base, Some(ASHA), reqwest::Method::GET, "/endpoints", None).await;
    assert_eq!(listed[0]["signed"], true);
    assert!(!listed.to_string().contains("whsec_"), "no key in a list");
    let (status, _) = call(&base, Some(RAVI), reqwest::Method::POST, &signing, None).await;
    assert_eq!(status, 404, "another creator cannot sign this endpoint");

    let (status, _) = call(&base, Some(ASHA), reqwest::Method::DELETE, &signing, None).await;
    assert_eq!(status, 204);
    test_event().await;
    received(&receiver, 3).await;
    assert!(
        !receiver.received()[2]
            .headers
            .contains_key("webhook-signature")
    );
}
