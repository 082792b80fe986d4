//! The axum extractor: the secret is checked from the headers before the body is read.

use axum_core::body::Body;
use axum_core::extract::{FromRef, FromRequest, Request};
use axum_core::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, HeaderValue};

use super::{ReceiveError, Receiver};
use crate::event::WebhookEvent;

/// Extracts a verified, parsed Fermion event from an axum request.
///
/// The [`Receiver`] comes from the router's state (`Receiver: FromRef<S>`). The secret header is
/// checked before a single byte of the body is read; a body over the receiver's limit is
/// refused with 413 as soon as its `Content-Length` or its bytes exceed the limit. Failures
/// answer with [`WebhookRejection`]: the status from [`ReceiveError::status`] and a JSON body
/// `{"error": "..."}`.
///
/// ```no_run
/// use axum::{Router, routing::post};
/// use fermion_webhooks::{Receiver, WebhookSecret};
/// use fermion_webhooks::receive::FermionWebhook;
///
/// async fn handle(FermionWebhook(event): FermionWebhook) -> &'static str {
///     println!("{} {}", event.event_unique_id, event.event_type());
///     "ok"
/// }
///
/// let receiver = Receiver::new(WebhookSecret::new("s3cr3t").unwrap());
/// let app: Router = Router::new()
///     .route("/webhooks/fermion", post(handle))
///     .with_state(receiver);
/// ```
#[derive(Clone, Debug)]
pub struct FermionWebhook(pub WebhookEvent);

/// Why [`FermionWebhook`] refused a request; answers as JSON `{"error": "..."}` with the
/// matching status.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct WebhookRejection(pub ReceiveError);

impl From<ReceiveError> for WebhookRejection {
    fn from(error: ReceiveError) -> Self {
        WebhookRejection(error)
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.0.explain() }).to_string();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.0.status();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl<S> FromRequest<S> for FermionWebhook
where
    Receiver: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = WebhookRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let receiver = Receiver::from_ref(state);
        let (parts, body) = request.into_parts();
        let event = receiver.receive_body(&parts.headers, body).await?;
        Ok(FermionWebhook(event))
    }
}
