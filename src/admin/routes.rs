//! The routes: endpoints of the requesting tenant, and test events to them.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{Admin, AdminError, Tenant};
use crate::dispatch::EndpointUpdate;
use crate::endpoint::Endpoint;
use crate::event::EventKind;
use crate::secret::WebhookSecret;
use crate::sender::is_global_address;
use crate::signature::SigningSecret;

/// The admin API's routes, to mount under any prefix with `Router::nest`.
///
/// - `GET /endpoints`, `POST /endpoints` `{url, events?, enabled?}` (201, with the generated
///   secret, shown this once);
/// - `GET`, `PATCH` `{url?, enabled?, events?}` and `DELETE /endpoints/{id}`;
/// - `POST /endpoints/{id}/rotate-secret` (the new secret, once);
/// - `POST /endpoints/{id}/test` `{eventType}` (202, the test event's id);
/// - `POST /endpoints/{id}/signing-secret` `{keepPrevious?}`: signs deliveries (Standard
///   Webhooks) with a new key, shown once, and by default with the previous one too while
///   receivers switch; `DELETE` stops signing;
/// - `GET /events?from&to&eventType=a,b&status&test&endpoint&limit&cursor` (the tenant's
///   events, newest first, `{events, nextCursor}`), `GET /events/{id}` (with its deliveries),
///   `GET /events/{id}/body` (the exact bytes sent), `GET /events/{id}/attempts`;
/// - `POST /events/{id}/retrigger` `{endpointId?}`, `POST /retrigger-failed`
///   `{since, until?, endpointId?}`;
/// - `GET /export?from&to&eventType=a,b&status&test&endpoint&format=csv|jsonl`: a streamed
///   download (`Content-Disposition: attachment`) in constant memory;
/// - `GET /openapi.json`: an OpenAPI 3.1 document of all of it;
/// - `GET /`: the dashboard page, one self-contained HTML file that loads nothing from
///   elsewhere, under a Content-Security-Policy that runs its own script only. It calls the
///   routes above with the browser's credentials for the platform (its cookies), or with a
///   bearer token typed in or passed as `#token=…` in the address.
///
/// The page and the OpenAPI document are served without authorization: they hold no data.
/// Lists and endpoints never show a secret, and no answer is cached (`Cache-Control:
/// no-store`). Changes (POST, PATCH, DELETE) coming from another site's page are refused with
/// 403, by the `Sec-Fetch-Site` and `Origin` headers browsers send; see
/// [`Admin::trust_origin`] to allow another origin.
pub fn router(admin: Admin) -> Router {
    use axum::middleware::{from_fn_with_state, map_response};
    Router::new()
        .route("/", get(super::page::page))
        .route("/endpoints", get(list).post(create))
        .route("/endpoints/{id}", get(show).patch(change).delete(remove))
        .route("/endpoints/{id}/rotate-secret", post(rotate_secret))
        .route("/endpoints/{id}/test", post(send_test))
        .route(
            "/endpoints/{id}/signing-secret",
            post(new_signing_secret).delete(stop_signing),
        )
        .merge(super::events::routes())
        .route("/openapi.json", get(openapi))
        .layer(from_fn_with_state(
            admin.clone(),
            super::csrf::refuse_cross_origin,
        ))
        .layer(map_response(never_cached))
        .with_state(admin)
}

/// Answers hold secrets shown once and customers' data: no cache keeps them, and no browser
/// guesses their type.
async fn never_cached(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An endpoint as the API shows it: everything but its secret.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointView {
    id: String,
    url: String,
    enabled: bool,
    /// The per-event switches that are on.
    events: Vec<EventKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    /// Whether deliveries carry a Standard Webhooks signature.
    signed: bool,
}

impl From<&Endpoint> for EndpointView {
    fn from(endpoint: &Endpoint) -> Self {
        Self {
            id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            enabled: endpoint.enabled,
            events: endpoint.events.iter().copied().collect(),
            disabled_reason: endpoint.disabled_reason.clone(),
            signed: !endpoint.signing_secrets.is_empty(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewEndpoint {
    url: String,
    events: Option<Vec<EventKind>>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndpointChange {
    url: Option<String>,
    events: Option<Vec<EventKind>>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestRequest {
    event_type: EventKind,
}

/// The tenant the request acts for.
pub(super) fn tenant(admin: &Admin, headers: &HeaderMap) -> Result<Tenant, AdminError> {
    admin.authorize.authorize(headers)
}

/// The body, or the error saying what is wrong with it.
pub(super) fn body<T>(parsed: Result<Json<T>, JsonRejection>) -> Result<T, AdminError> {
    match parsed {
        Ok(Json(value)) => Ok(value),
        Err(JsonRejection::JsonDataError(error)) => Err(AdminError::invalid(error.body_text())),
        Err(error) => Err(AdminError::bad_request(error.body_text())),
    }
}

/// The tenant's endpoint with this id; 404 for another tenant's, as for none.
fn owned(admin: &Admin, tenant: &Tenant, id: &str) -> Result<Endpoint, AdminError> {
    admin
        .owned_endpoints(tenant)
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| AdminError::not_found(format!("no endpoint {id}")))
}

/// The requesting tenant's endpoint with this id.
fn requested(admin: &Admin, headers: &HeaderMap, id: &str) -> Result<Endpoint, AdminError> {
    owned(admin, &tenant(admin, headers)?, id)
}

async fn list(
    State(admin): State<Admin>,
    headers: HeaderMap,
) -> Result<Json<Vec<EndpointView>>, AdminError> {
    let mut mine = admin.owned_endpoints(&tenant(&admin, &headers)?);
    mine.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(mine.iter().map(EndpointView::from).collect()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    endpoint: EndpointView,
    /// Shown this once: the creator copies it into their receiver.
    secret: String,
}

async fn create(
    State(admin): State<Admin>,
    headers: HeaderMap,
    parsed: Result<Json<NewEndpoint>, JsonRejection>,
) -> Result<(StatusCode, Json<Created>), AdminError> {
    let tenant = tenant(&admin, &headers)?;
    let new = body(parsed)?;
    check_url(&admin, &new.url)?;
    let secret = generated_secret()?;
    let id = format!("ep_{}", uuid::Uuid::new_v4().simple());
    let mut endpoint = Endpoint::new(id, new.url, secret.clone())
        .map_err(|e| AdminError::invalid(e.to_string()))?
        .owned_by(tenant.0)
        .enabled(new.enabled.unwrap_or(true));
    if let Some(events) = new.events {
        endpoint = endpoint.subscribe_only(events);
    }
    admin.dispatcher.add_endpoint(endpoint.clone()).await?;
    let created = Created {
        endpoint: EndpointView::from(&endpoint),
        secret: secret.expose_secret().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// Refuses a URL the sender would never deliver to: a loopback, private or otherwise
/// non-global IP literal, or `localhost`, unless the admin allows private networks. Names are
/// not resolved here; the sender checks every address it connects to.
fn check_url(admin: &Admin, text: &str) -> Result<(), AdminError> {
    if admin.allow_private_networks {
        return Ok(());
    }
    let Ok(url) = url::Url::parse(text) else {
        // Endpoint validation says what is wrong with it.
        return Ok(());
    };
    let private = match url.host() {
        Some(url::Host::Ipv4(address)) => !is_global_address(address.into()),
        Some(url::Host::Ipv6(address)) => !is_global_address(address.into()),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
    };
    if private {
        return Err(AdminError::invalid(format!(
            "{text} points at a loopback or private address, which webhooks are never sent to; \
             give a public URL"
        )));
    }
    Ok(())
}

fn generated_secret() -> Result<WebhookSecret, AdminError> {
    WebhookSecret::generate().map_err(|error| AdminError::internal(&error.to_string()))
}

async fn show(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, AdminError> {
    Ok(Json(EndpointView::from(&requested(&admin, &headers, &id)?)))
}

async fn change(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    parsed: Result<Json<EndpointChange>, JsonRejection>,
) -> Result<Json<EndpointView>, AdminError> {
    let tenant = tenant(&admin, &headers)?;
    let change = body(parsed)?;
    owned(&admin, &tenant, &id)?;
    let mut update = EndpointUpdate::new();
    if let Some(url) = change.url {
        check_url(&admin, &url)?;
        update = update.url(url);
    }
    if let Some(events) = change.events {
        update = update.events(events);
    }
    if let Some(enabled) = change.enabled {
        update = update.enabled(enabled);
    }
    let changed = admin.dispatcher.update_endpoint(&id, update).await?;
    Ok(Json(EndpointView::from(&changed)))
}

async fn remove(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    requested(&admin, &headers, &id)?;
    admin.dispatcher.remove_endpoint(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct NewSecret {
    /// Shown this once.
    secret: String,
}

async fn rotate_secret(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<NewSecret>, AdminError> {
    requested(&admin, &headers, &id)?;
    let secret = generated_secret()?;
    admin
        .dispatcher
        .update_endpoint(&id, EndpointUpdate::new().secret(secret.clone()))
        .await?;
    Ok(Json(NewSecret {
        secret: secret.expose_secret().to_owned(),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TestSent {
    event_unique_id: String,
}

async fn send_test(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    parsed: Result<Json<TestRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<TestSent>), AdminError> {
    let tenant = tenant(&admin, &headers)?;
    let request = body(parsed)?;
    owned(&admin, &tenant, &id)?;
    let sent = admin
        .dispatcher
        .send_test_event(request.event_type, &id)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TestSent {
            event_unique_id: sent.event_unique_id,
        }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SigningRequest {
    /// Keep signing with the current key too (the default), until receivers have the new one.
    keep_previous: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewSigningSecret {
    /// Shown this once: `whsec_...`, for the receiver's Standard Webhooks verification.
    signing_secret: String,
    /// How many keys sign each delivery from now on (2 while the previous one is kept).
    keys: usize,
}

async fn new_signing_secret(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    parsed: Option<Json<SigningRequest>>,
) -> Result<Json<NewSigningSecret>, AdminError> {
    let endpoint = requested(&admin, &headers, &id)?;
    let request = parsed.map(|Json(r)| r).unwrap_or_default();
    let key = SigningSecret::generate().map_err(|e| AdminError::internal(&e.to_string()))?;
    let mut keys = vec![key.clone()];
    if request.keep_previous.unwrap_or(true) {
        keys.extend(endpoint.signing_secrets.first().cloned());
    }
    let count = keys.len();
    admin
        .dispatcher
        .update_endpoint(&id, EndpointUpdate::new().signing_secrets(keys))
        .await?;
    Ok(Json(NewSigningSecret {
        signing_secret: key.expose_secret(),
        keys: count,
    }))
}

async fn stop_signing(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    requested(&admin, &headers, &id)?;
    admin
        .dispatcher
        .update_endpoint(&id, EndpointUpdate::new().signing_secrets([]))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI 3.1 document of these routes; a test checks it against them.
async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}
