//! The real PostgreSQL for tests: `FERMION_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), one schema per test, dropped afterwards.
//!
//! Without a server, a test that needs one prints a line saying it was skipped and passes,
//! unless `FERMION_REQUIRE_POSTGRES=1` (CI sets it), which makes it fail instead.

#![allow(dead_code)] // Each test file uses a different part.

use std::sync::atomic::{AtomicU32, Ordering};

use fermion_webhooks::store::PostgresLogStore;

/// The test server's URL.
pub fn url() -> String {
    std::env::var("FERMION_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of the test database that is dropped with this value.
pub struct Schema {
    pub name: String,
}

impl Schema {
    /// A new, empty schema, or `None` (after saying so) when no server answers.
    pub async fn new(label: &str) -> Option<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "fermion_test_{label}_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            chrono::Utc::now().timestamp_micros()
        );
        use sqlx::Connection;
        match sqlx::PgConnection::connect(&url()).await {
            Ok(mut conn) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Some(Schema { name })
            }
            Err(error) => {
                if std::env::var("FERMION_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                    panic!(
                        "FERMION_REQUIRE_POSTGRES=1 but PostgreSQL at {} did not answer: {error}",
                        url()
                    );
                }
                // Once per test binary, and past the test harness's capture of `eprintln!`.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    use std::io::Write;
                    let _ = writeln!(
                        std::io::stderr(),
                        "skipped: the PostgreSQL tests, no server at {} ({error}); set \
                         FERMION_TEST_DATABASE_URL, or FERMION_REQUIRE_POSTGRES=1 to fail instead",
                        url()
                    );
                });
                None
            }
        }
    }

    /// A log store whose tables live in this schema.
    pub async fn store(&self) -> PostgresLogStore {
        PostgresLogStore::connect_in_schema(&url(), &self.name)
            .await
            .unwrap()
    }

    /// The URL of the test database with this schema as its search path.
    pub fn url(&self) -> String {
        let base = url();
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}options=-c%20search_path%3D{}", self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropped from a thread of its own: this may run inside a test's runtime, which cannot
        // block on another future.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url()).await {
                    let drop = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
