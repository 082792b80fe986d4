//! `MemoryCheckoutStore`: pending checkouts in memory.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Checkout, CheckoutStore};
use crate::store::LogError;

/// Pending checkouts in memory; they are lost on restart.
#[derive(Debug, Default)]
pub struct MemoryCheckoutStore {
    pending: Mutex<BTreeMap<String, Checkout>>,
}

impl MemoryCheckoutStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Checkout>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl CheckoutStore for MemoryCheckoutStore {
    async fn insert(&self, checkout: Checkout) -> Result<(), LogError> {
        self.lock().insert(checkout.order_id.clone(), checkout);
        Ok(())
    }

    async fn remove(&self, order_id: &str) -> Result<bool, LogError> {
        Ok(self.lock().remove(order_id).is_some())
    }

    async fn pending(&self) -> Result<Vec<Checkout>, LogError> {
        Ok(self.lock().values().cloned().collect())
    }
}
