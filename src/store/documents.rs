//! Endpoints and pending checkouts, kept by every backend beside the log as JSON documents.

use async_trait::async_trait;

use super::LogError;
use crate::checkout::{Checkout, CheckoutStore};
use crate::endpoint::Endpoint;

/// Where the endpoints live, shared by every instance that uses the same store.
///
/// The store holds each endpoint's **secret**: protect it as you protect the database (the
/// file backend's files are readable by their owner only).
#[async_trait]
pub trait EndpointStore: Send + Sync + std::fmt::Debug {
    /// Stores `endpoint`, replacing one with the same id.
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), LogError>;

    /// The endpoint with this id.
    async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, LogError>;

    /// Every endpoint, or only those of `owner` (a course creator), by id.
    async fn endpoints(&self, owner: Option<&str>) -> Result<Vec<Endpoint>, LogError>;

    /// Removes the endpoint; returns whether it was there.
    async fn remove_endpoint(&self, id: &str) -> Result<bool, LogError>;
}

/// What kind of document a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Endpoint,
    Checkout,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Endpoint => "endpoint",
            Kind::Checkout => "checkout",
        }
    }
}

/// A backend's table of JSON documents by kind and key, from which [`EndpointStore`] and
/// [`CheckoutStore`] follow.
#[async_trait]
pub(crate) trait Documents: Send + Sync + std::fmt::Debug {
    /// Stores a document, replacing the one with the same kind and key.
    async fn put(
        &self,
        kind: Kind,
        key: &str,
        owner: Option<&str>,
        body: String,
    ) -> Result<(), LogError>;
    /// The document of this kind and key.
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<String>, LogError>;
    /// Every document of this kind (and owner, when given), by key.
    async fn list(&self, kind: Kind, owner: Option<&str>) -> Result<Vec<String>, LogError>;
    /// Deletes a document; returns whether it was there.
    async fn delete(&self, kind: Kind, key: &str) -> Result<bool, LogError>;
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, LogError> {
    serde_json::to_string(value).map_err(|e| LogError::Corrupt {
        reason: e.to_string(),
    })
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, LogError> {
    serde_json::from_str(text).map_err(|e| LogError::Corrupt {
        reason: format!("a stored document does not read back: {e}"),
    })
}

#[async_trait]
impl<T: Documents> EndpointStore for T {
    async fn put_endpoint(&self, endpoint: &Endpoint) -> Result<(), LogError> {
        endpoint.validate().map_err(|e| LogError::InvalidEntry {
            id: endpoint.id.clone(),
            reason: e.to_string(),
        })?;
        let body = to_json(endpoint)?;
        self.put(
            Kind::Endpoint,
            &endpoint.id,
            endpoint.owner.as_deref(),
            body,
        )
        .await
    }

    async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, LogError> {
        self.get(Kind::Endpoint, id)
            .await?
            .map(|body| from_json(&body))
            .transpose()
    }

    async fn endpoints(&self, owner: Option<&str>) -> Result<Vec<Endpoint>, LogError> {
        self.list(Kind::Endpoint, owner)
            .await?
            .iter()
            .map(|body| from_json(body))
            .collect()
    }

    async fn remove_endpoint(&self, id: &str) -> Result<bool, LogError> {
        self.delete(Kind::Endpoint, id).await
    }
}

#[async_trait]
impl<T: Documents> CheckoutStore for T {
    async fn insert(&self, checkout: Checkout) -> Result<(), LogError> {
        let body = to_json(&checkout)?;
        self.put(Kind::Checkout, &checkout.order_id, None, body)
            .await
    }

    async fn remove(&self, order_id: &str) -> Result<bool, LogError> {
        self.delete(Kind::Checkout, order_id).await
    }

    async fn pending(&self) -> Result<Vec<Checkout>, LogError> {
        self.list(Kind::Checkout, None)
            .await?
            .iter()
            .map(|body| from_json(body))
            .collect()
    }
}
