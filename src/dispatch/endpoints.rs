//! Changing one endpoint at a time, and disabling one that keeps failing.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{DispatchError, Dispatcher, Inner, lock};
use crate::endpoint::{Endpoint, EndpointError};
use crate::event::EventKind;
use crate::secret::WebhookSecret;

/// When the dispatcher disables an endpoint that keeps failing, as Svix does: once every
/// attempt to it has failed for `after` and at least `min_attempts` attempts have been made.
/// Its deliveries then wait, paused, until it is enabled again; the platform hears of it
/// through [`Dispatcher::on_auto_disable`] and the endpoint's `disabled_reason` says why.
///
/// The start of a failure streak is kept on the endpoint (`failing_since`, in the store when
/// the endpoints are kept there), so it survives restarts; the attempts are counted by each
/// dispatcher since it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AutoDisable {
    /// How long every attempt must have failed (default 5 days).
    pub after: Duration,
    /// How many failed attempts at least (default 10).
    pub min_attempts: u32,
}

impl Default for AutoDisable {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(5 * 24 * 3600),
            min_attempts: 10,
        }
    }
}

impl AutoDisable {
    /// Disables after `after` of failures and at least `min_attempts` failed attempts.
    pub fn new(after: Duration, min_attempts: u32) -> Self {
        Self {
            after,
            min_attempts,
        }
    }
}

/// A change to one endpoint, for [`Dispatcher::update_endpoint`]: only the fields set change.
///
/// ```
/// use fermion_webhooks::EventKind;
/// use fermion_webhooks::dispatch::EndpointUpdate;
///
/// let change = EndpointUpdate::new()
///     .url("https://crm.example.com/hooks/v2")
///     .events([EventKind::PaidCourseSale]);
/// # let _ = change;
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct EndpointUpdate {
    /// A new URL.
    pub url: Option<String>,
    /// A new secret.
    pub secret: Option<WebhookSecret>,
    /// New per-event switches: the kinds it receives.
    pub events: Option<BTreeSet<EventKind>>,
    /// On or off.
    pub enabled: Option<bool>,
    /// New Standard Webhooks signing keys (empty: stop signing).
    pub signing_secrets: Option<Vec<crate::SigningSecret>>,
}

impl EndpointUpdate {
    /// No change yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Changes the secret (rotation).
    pub fn secret(mut self, secret: WebhookSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Subscribes to exactly these kinds.
    pub fn events(mut self, kinds: impl IntoIterator<Item = EventKind>) -> Self {
        self.events = Some(kinds.into_iter().collect());
        self
    }

    /// Signs with exactly these keys from now on (the new one first during a rotation; none
    /// stops signing).
    pub fn signing_secrets(mut self, keys: impl IntoIterator<Item = crate::SigningSecret>) -> Self {
        self.signing_secrets = Some(keys.into_iter().collect());
        self
    }

    /// Turns the endpoint on or off.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = Some(enabled);
        self
    }

    fn apply(self, endpoint: Endpoint) -> Endpoint {
        let mut endpoint = match self.enabled {
            Some(enabled) => endpoint.enabled(enabled),
            None => endpoint,
        };
        if let Some(url) = self.url {
            endpoint.url = url;
        }
        if let Some(secret) = self.secret {
            endpoint.secret = secret;
        }
        if let Some(events) = self.events {
            endpoint.events = events;
        }
        if let Some(keys) = self.signing_secrets {
            endpoint.signing_secrets = keys;
        }
        endpoint
    }
}

/// What the platform is told when an endpoint is disabled automatically.
type DisabledHook = Arc<dyn Fn(&Endpoint) + Send + Sync>;

/// Endpoint edits, one at a time, and failure streaks.
#[derive(Default)]
pub(super) struct Upkeep {
    edits: tokio::sync::Mutex<()>,
    /// Failed attempts in a row by endpoint since the streak started.
    streaks: Mutex<HashMap<String, (DateTime<Utc>, u32)>>,
    on_disabled: Mutex<Option<DisabledHook>>,
}

impl std::fmt::Debug for Upkeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upkeep").finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Adds an endpoint (to the store too, when the endpoints are kept there). Fails with
    /// [`EndpointError::DuplicateId`] if one with its id exists.
    pub async fn add_endpoint(&self, endpoint: Endpoint) -> Result<(), DispatchError> {
        endpoint.validate()?;
        let _edit = self.inner.upkeep.edits.lock().await;
        if self.inner.current(&endpoint.id).await?.is_some() {
            return Err(EndpointError::DuplicateId { id: endpoint.id }.into());
        }
        self.inner.save(endpoint).await
    }

    /// Changes one endpoint: its URL, secret, per-event switches or on/off switch, leaving the
    /// rest (and every other endpoint) as it is. Returns the endpoint as changed.
    pub async fn update_endpoint(
        &self,
        id: &str,
        update: EndpointUpdate,
    ) -> Result<Endpoint, DispatchError> {
        self.inner
            .change(id, |endpoint| Ok(update.apply(endpoint)))
            .await
    }

    /// Turns an endpoint on: its paused deliveries resume.
    pub async fn enable_endpoint(&self, id: &str) -> Result<Endpoint, DispatchError> {
        self.update_endpoint(id, EndpointUpdate::new().enabled(true))
            .await
    }

    /// Turns an endpoint off: it gets no new events, and its pending deliveries wait.
    pub async fn disable_endpoint(&self, id: &str) -> Result<Endpoint, DispatchError> {
        self.update_endpoint(id, EndpointUpdate::new().enabled(false))
            .await
    }

    /// Removes an endpoint. Its pending deliveries end as failed ("endpoint removed").
    pub async fn remove_endpoint(&self, id: &str) -> Result<(), DispatchError> {
        let _edit = self.inner.upkeep.edits.lock().await;
        let removed = match &self.inner.endpoint_source {
            Some(source) => source.remove_endpoint(id).await?,
            None => self.inner.endpoint_list().iter().any(|e| e.id == id),
        };
        if !removed {
            return Err(DispatchError::UnknownEndpoint { id: id.to_owned() });
        }
        self.inner.replace_local(id, None);
        self.inner.ready.claim_more();
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Calls `hook` with the endpoint, as disabled, whenever [`AutoDisable`] turns one off:
    /// the place to tell its owner.
    pub fn on_auto_disable(&self, hook: impl Fn(&Endpoint) + Send + Sync + 'static) {
        *lock(&self.inner.upkeep.on_disabled) = Some(Arc::new(hook));
    }
}

impl Inner {
    /// The endpoint as last stored, or as this dispatcher knows it.
    async fn current(&self, id: &str) -> Result<Option<Endpoint>, DispatchError> {
        Ok(match &self.endpoint_source {
            Some(source) => source.endpoint(id).await?,
            None => self.endpoint_list().iter().find(|e| e.id == id).cloned(),
        })
    }

    /// Stores `endpoint` where the endpoints are kept, and uses it here.
    async fn save(&self, endpoint: Endpoint) -> Result<(), DispatchError> {
        if let Some(source) = &self.endpoint_source {
            source.put_endpoint(&endpoint).await?;
        }
        let id = endpoint.id.clone();
        self.replace_local(&id, Some(endpoint));
        // Enabled, or changed: deliveries waiting for it may be claimable now.
        self.ready.claim_more();
        self.wake.notify_one();
        Ok(())
    }

    /// Applies `change` to one endpoint, one edit at a time.
    pub(super) async fn change(
        &self,
        id: &str,
        change: impl FnOnce(Endpoint) -> Result<Endpoint, DispatchError>,
    ) -> Result<Endpoint, DispatchError> {
        let _edit = self.upkeep.edits.lock().await;
        let current = self
            .current(id)
            .await?
            .ok_or_else(|| DispatchError::UnknownEndpoint { id: id.to_owned() })?;
        let changed = change(current)?;
        changed.validate()?;
        self.save(changed.clone()).await?;
        Ok(changed)
    }

    /// Puts `endpoint` in this dispatcher's list in place of the one with `id` (or removes it).
    fn replace_local(&self, id: &str, endpoint: Option<Endpoint>) {
        let mut list = self.endpoints.write().unwrap_or_else(|p| p.into_inner());
        let mut endpoints: Vec<Endpoint> = list.iter().filter(|e| e.id != id).cloned().collect();
        endpoints.extend(endpoint);
        *list = endpoints.into();
    }

    /// Notes an attempt's outcome for `endpoint`'s failure streak, and disables the endpoint
    /// once [`AutoDisable`] says so.
    pub(super) async fn note_outcome(
        &self,
        endpoint: &Endpoint,
        succeeded: bool,
        at: DateTime<Utc>,
    ) {
        if succeeded {
            lock(&self.upkeep.streaks).remove(&endpoint.id);
            if endpoint.failing_since.is_some() {
                self.keep_streak(&endpoint.id, None).await;
            }
            return;
        }
        let (since, failed) = {
            let mut streaks = lock(&self.upkeep.streaks);
            let streak = streaks
                .entry(endpoint.id.clone())
                .or_insert((endpoint.failing_since.unwrap_or(at), 0));
            streak.1 += 1;
            *streak
        };
        if endpoint.failing_since.is_none() {
            self.keep_streak(&endpoint.id, Some(since)).await;
        }
        let Some(rule) = self.config.auto_disable else {
            return;
        };
        let failing_for = (at - since).to_std().unwrap_or_default();
        if failing_for < rule.after || failed < rule.min_attempts {
            return;
        }
        let reason = format!(
            "disabled automatically: every attempt failed since {} ({failed} attempts)",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let disabled = self
            .change(&endpoint.id, |endpoint| {
                let mut endpoint = endpoint.enabled(false);
                endpoint.disabled_reason = Some(reason.clone());
                Ok(endpoint)
            })
            .await;
        lock(&self.upkeep.streaks).remove(&endpoint.id);
        match disabled {
            Ok(endpoint) => {
                tracing::warn!(
                    endpoint_id = %endpoint.id,
                    failing_since = %since,
                    failed_attempts = failed,
                    "endpoint disabled automatically; its deliveries wait until it is enabled"
                );
                let hook = lock(&self.upkeep.on_disabled).clone();
                if let Some(hook) = hook {
                    hook(&endpoint);
                }
            }
            Err(error) => tracing::error!(
                endpoint_id = %endpoint.id,
                error = %crate::error_chain(&error),
                "could not disable a failing endpoint"
            ),
        }
    }

    /// Keeps the start of a failure streak on the endpoint (`None`: it answered again).
    async fn keep_streak(&self, id: &str, since: Option<DateTime<Utc>>) {
        let kept = self
            .change(id, |mut endpoint| {
                endpoint.failing_since = since;
                Ok(endpoint)
            })
            .await;
        if let Err(error) = kept {
            tracing::error!(
                endpoint_id = %id,
                error = %crate::error_chain(&error),
                "could not keep the endpoint's failure streak"
            );
        }
    }
}
