//! The admin API (feature `admin`): a course creator's webhook settings as JSON routes for
//! axum, to mount behind the platform's own login.
//!
//! Every request goes through the platform's [`Authorize`] hook, which names the tenant (the
//! course creator owning the endpoints) or refuses it; a tenant sees and changes only its own
//! endpoints. There is no unauthenticated mode but the one named
//! [`UnauthenticatedForLocalDevelopment`]. Errors are `{"error":{"code","message"}}` with 400, 401, 403, 404, 409 or 422.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fermion_webhooks::admin::{self, Admin, BearerTokens};
//! use fermion_webhooks::clock::SystemClock;
//! use fermion_webhooks::{DispatchConfig, Dispatcher, FileLogStore, HttpSender};
//!
//! # async fn mount() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(FileLogStore::open("fermion-webhook-logs").await?);
//! let dispatcher = Dispatcher::start_with_stored_endpoints(
//!     store.clone(), Arc::new(HttpSender::new()?), DispatchConfig::default(), Arc::new(SystemClock),
//! ).await?;
//! let token = fermion_webhooks::WebhookSecret::new("creator-7-token")?;
//! let tokens = BearerTokens::new().token(&token, "creator-7");
//! let api = admin::router(Admin::new(dispatcher, Arc::new(tokens)));
//! let app = axum::Router::new().nest("/webhooks", api);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod csrf;
mod download;
mod events;
mod page;
mod routes;

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::dispatch::{DispatchError, Dispatcher};
use crate::secret::{PaddedSecret, WebhookSecret, matches_any};

pub use routes::router;

/// Who a request acts for: the owner of the endpoints it may see and change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant(pub String);

/// The platform's authorization hook: maps a request's headers to a [`Tenant`], or refuses
/// it with an [`AdminError`] (401 for no or bad credentials, 403 for a tenant that may not use
/// the API).
pub trait Authorize: Send + Sync + 'static {
    /// The tenant this request acts for.
    fn authorize(&self, headers: &HeaderMap) -> Result<Tenant, AdminError>;
}

/// `Authorization: Bearer <token>`, each token acting for one tenant; for tools and local
/// development. Tokens are compared in constant time, as secrets are.
#[derive(Clone, Default)]
pub struct BearerTokens {
    tokens: Vec<(PaddedSecret, Tenant)>,
}

impl std::fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerTokens")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl BearerTokens {
    /// No token yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` for `tenant`.
    pub fn token(mut self, token: &WebhookSecret, tenant: impl Into<String>) -> Self {
        self.tokens
            .push((PaddedSecret::new(token), Tenant(tenant.into())));
        self
    }
}

impl Authorize for BearerTokens {
    fn authorize(&self, headers: &HeaderMap) -> Result<Tenant, AdminError> {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| AdminError::unauthorized("send Authorization: Bearer <token>"))?;
        // Every token is compared, so the time taken says nothing about which one matched.
        let mut found = None;
        for (token, tenant) in &self.tokens {
            if matches_any(std::slice::from_ref(token), given.as_bytes()) {
                found = Some(tenant.clone());
            }
        }
        found.ok_or_else(|| AdminError::unauthorized("the bearer token is not valid"))
    }
}

/// Every request acts for one tenant, with no credentials at all: **for local development
/// only** (the `dashboard` example on 127.0.0.1, say), never behind a public address. The name
/// is long on purpose, so that it stands out in review.
#[derive(Clone, Debug)]
pub struct UnauthenticatedForLocalDevelopment {
    tenant: Tenant,
}

impl UnauthenticatedForLocalDevelopment {
    /// Every request acts for `tenant`. Warns in the trace that the API is open.
    pub fn acting_for(tenant: impl Into<String>) -> Self {
        let tenant = Tenant(tenant.into());
        tracing::warn!(
            tenant = %tenant.0,
            "the admin API is open without credentials; use this for local development only"
        );
        Self { tenant }
    }
}

impl Authorize for UnauthenticatedForLocalDevelopment {
    fn authorize(&self, _: &HeaderMap) -> Result<Tenant, AdminError> {
        Ok(self.tenant.clone())
    }
}

/// What the router serves: the dispatcher whose endpoints and log it shows, and the hook that
/// authorizes every request.
#[derive(Clone)]
pub struct Admin {
    pub(crate) dispatcher: Dispatcher,
    pub(crate) authorize: Arc<dyn Authorize>,
    pub(crate) trusted_origins: Arc<[String]>,
    pub(crate) allow_private_networks: bool,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// The API over `dispatcher`'s endpoints and log, every request authorized by
    /// `authorize`. Start the dispatcher with
    /// [`start_with_stored_endpoints`](Dispatcher::start_with_stored_endpoints) so that
    /// changes reach every instance.
    pub fn new(dispatcher: Dispatcher, authorize: Arc<dyn Authorize>) -> Self {
        Self {
            dispatcher,
            authorize,
            trusted_origins: Arc::from([]),
            allow_private_networks: false,
        }
    }

    /// The endpoints `tenant` owns.
    pub(crate) fn owned_endpoints(&self, tenant: &Tenant) -> Vec<crate::Endpoint> {
        let mut mine = self.dispatcher.endpoints();
        mine.retain(|e| e.owner.as_deref() == Some(tenant.0.as_str()));
        mine
    }

    /// Accepts endpoint URLs on loopback and private addresses (`http://127.0.0.1:9000/`,
    /// `http://localhost/`), for local development. Off by default: such URLs are refused with
    /// 422 when an endpoint is created or changed, as the sender would refuse to deliver to them.
    pub fn allow_private_networks(mut self, allow: bool) -> Self {
        self.allow_private_networks = allow;
        self
    }

    /// Also accepts changes (POST, PATCH, DELETE) from pages on `origin`, such as
    /// `https://admin.example.com`, besides the router's own origin: for a platform whose
    /// proxy rewrites `Host`, or whose own front end calls the API from another host. Every
    /// other cross-origin change is refused with 403 (see the crate's CSRF protection in
    /// [`router`]).
    pub fn trust_origin(mut self, origin: impl Into<String>) -> Self {
        let mut origins = self.trusted_origins.to_vec();
        origins.push(origin.into().trim_end_matches('/').to_owned());
        self.trusted_origins = origins.into();
        self
    }
}

/// An API error: its status, a stable code and a message for people.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401: no credentials, or bad ones.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: known, but not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 500, with the cause traced, not shown.
    pub(crate) fn internal(cause: &str) -> Self {
        tracing::error!(error = %cause, "admin API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the webhook service failed; try again later",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code: `unauthorized`, `forbidden`, `not_found`, `conflict`, `invalid`,
    /// `bad_request` or `internal`.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<DispatchError> for AdminError {
    fn from(error: DispatchError) -> Self {
        let message = crate::error_chain(&error);
        match error {
            DispatchError::UnknownEndpoint { .. } | DispatchError::UnknownEvent { .. } => {
                Self::not_found(message)
            }
            DispatchError::Endpoint(crate::dispatch::EndpointError::DuplicateId { .. })
            | DispatchError::DeliveryInFlight { .. }
            | DispatchError::EndpointDisabled { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", message)
            }
            DispatchError::Endpoint(_) | DispatchError::InvalidEvent(_) => Self::invalid(message),
            DispatchError::BodyTooLarge { .. } => Self::invalid(message),
            _ => Self::internal(&message),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"code": self.code, "message": self.message}
        });
        (self.status, Json(body)).into_response()
    }
}
