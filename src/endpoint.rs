//! Endpoints: where events go, with what secret, and which kinds each one wants.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::event::EventKind;
use crate::secret::WebhookSecret;
use crate::signature::SigningSecret;

/// Why an endpoint's configuration is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The id is empty.
    #[error("an endpoint needs a non-empty id")]
    EmptyId,
    /// The URL does not parse, or is not http(s) with a host.
    #[error("endpoint {id}: {url:?} is not a usable webhook URL: {reason}")]
    InvalidUrl {
        /// The endpoint id.
        id: String,
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two endpoints share an id.
    #[error("two endpoints have the id {id}; endpoint ids must be unique")]
    DuplicateId {
        /// The id.
        id: String,
    },
}

/// A webhook endpoint: an id, a URL (http or https), a secret, an on/off switch, and the event
/// kinds it is subscribed to (by default all four).
///
/// Plain serde data, so a platform can keep endpoints in its own database; the secret is
/// redacted in `Debug`.
///
/// ```
/// use fermion_webhooks::{Endpoint, EventKind, WebhookSecret};
///
/// let accounting = Endpoint::new(
///     "accounting",
///     "https://books.example.com/hooks/fermion",
///     WebhookSecret::new("s3cr3t").unwrap(),
/// )
/// .unwrap()
/// .subscribe_only([EventKind::PaidCourseSale, EventKind::PaymentFailed]);
/// assert!(accounting.wants(EventKind::PaidCourseSale));
/// assert!(!accounting.wants(EventKind::FreeCourseEnrollment));
/// assert!(!format!("{accounting:?}").contains("s3cr3t"));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// A stable id, recorded with every delivery.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// Sent in `X-Fermion-Webhook-Secret`.
    pub secret: WebhookSecret,
    /// The endpoint's on/off switch. A disabled endpoint is paused: new events are not
    /// logged for it, and its pending deliveries wait until it is enabled again.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Why the endpoint was disabled, when the dispatcher did it (see
    /// [`AutoDisable`](crate::dispatch::AutoDisable)); cleared when it is enabled again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Since when every attempt to the endpoint has failed, kept by the dispatcher; `None`
    /// while it answers.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::event::time_serde::iso_millis_option"
    )]
    pub failing_since: Option<chrono::DateTime<chrono::Utc>>,
    /// The per-event switches: the kinds it receives.
    #[serde(default = "all_kinds")]
    pub events: BTreeSet<EventKind>,
    /// Who it belongs to (a course creator's id), if anyone: an admin API shows each owner
    /// only their own endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// [Standard Webhooks](crate::signature) keys: when any is given, every delivery is
    /// signed with each (the Fermion secret header is still sent). Rotate by putting the new
    /// key first and keeping the old one until the receiver has switched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_secrets: Vec<SigningSecret>,
}

fn enabled_by_default() -> bool {
    true
}

fn all_kinds() -> BTreeSet<EventKind> {
    EventKind::ALL.into_iter().collect()
}

impl Endpoint {
    /// An enabled endpoint subscribed to all four kinds; checks the id and URL.
    pub fn new(
        id: impl Into<String>,
        url: impl Into<String>,
        secret: WebhookSecret,
    ) -> Result<Self, EndpointError> {
        let endpoint = Self {
            id: id.into(),
            url: url.into(),
            secret,
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            events: all_kinds(),
            owner: None,
            signing_secrets: Vec::new(),
        };
        endpoint.validate()?;
        Ok(endpoint)
    }

    /// Subscribes to exactly these kinds.
    pub fn subscribe_only(mut self, kinds: impl IntoIterator<Item = EventKind>) -> Self {
        self.events = kinds.into_iter().collect();
        self
    }

    /// Signs every delivery with `key` too (Standard Webhooks).
    pub fn signed_with(mut self, key: SigningSecret) -> Self {
        self.signing_secrets.push(key);
        self
    }

    /// Gives the endpoint an owner (a course creator's id).
    pub fn owned_by(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Turns the endpoint on or off; turning it on clears the reason it was disabled and its
    /// failure streak.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        if enabled {
            self.disabled_reason = None;
            self.failing_since = None;
        }
        self
    }

    /// Whether the endpoint is on and subscribed to `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.enabled && self.events.contains(&kind)
    }

    /// Checks the id and URL (for endpoints read from storage).
    pub fn validate(&self) -> Result<(), EndpointError> {
        if self.id.trim().is_empty() {
            return Err(EndpointError::EmptyId);
        }
        let invalid = |reason: &str| EndpointError::InvalidUrl {
            id: self.id.clone(),
            url: self.url.clone(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(&self.url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("only http and https URLs can receive webhooks"));
        }
        if url.host().is_none() {
            return Err(invalid("the URL has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials in the URL would be logged with every delivery; use the secret",
            ));
        }
        Ok(())
    }
}

/// Checks a set of endpoints: each valid, ids unique.
pub(crate) fn validate_all(endpoints: &[Endpoint]) -> Result<(), EndpointError> {
    for (index, endpoint) in endpoints.iter().enumerate() {
        endpoint.validate()?;
        if endpoints[..index]
            .iter()
            .any(|other| other.id == endpoint.id)
        {
            return Err(EndpointError::DuplicateId {
                id: endpoint.id.clone(),
            });
        }
    }
    Ok(())
}
