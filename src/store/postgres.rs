//! `PostgresLogStore`: the event log in PostgreSQL, shared by every instance of a platform.

mod writes;

use std::ops::ControlFlow;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder, Row};

use super::group::Group;
use super::query::{Cursor, EventRow, LogFilter, Page, Position};
use super::record::{
    AttemptRecord, ClaimRequest, ClaimToken, Delivery, DueDelivery, EndpointBacklog, EventBody,
    StoredEvent, lease_end, round_robin,
};
use super::sql::{AttemptColumns, EventTables, assemble};
use super::{DeliveryState, Documents, Kind, LogError, LogStore, validate_new_entry};
use writes::{NewEntry, append_batch, locate, record_batch};

/// The event log in PostgreSQL (feature `postgres`): every instance of a platform shares it.
///
/// [`connect`](Self::connect) applies the embedded migrations (`migrations/postgres/` in the
/// crate's sources) before it returns, so a new database needs no set-up. The tables are
/// `fermion_events` (the exact body, overall status, attempt count, and how many deliveries
/// are pending and failed), `fermion_unsettled_events` (the pending and failed ones' status,
/// for the status filter), `fermion_deliveries` and `fermion_attempts`, in the schema the
/// connection uses: give the URL `?options=-c search_path=webhooks` or use
/// [`connect_in_schema`](Self::connect_in_schema) to keep them apart from your own.
///
/// Writes made while others are being written go together (group commit): one statement and
/// one commit for every append waiting (up to 128), each event with its deliveries, and the
/// same for attempts, each with its delivery's new state and its event's status. 64
/// concurrent emits then cost the server a few statements instead of 128. A write the server
/// refuses (text with a NUL byte, say) fails alone: the others of its batch are then written
/// one by one.
///
/// ```no_run
/// use fermion_webhooks::store::PostgresLogStore;
///
/// # async fn run() -> Result<(), fermion_webhooks::store::LogError> {
/// let log = PostgresLogStore::connect("postgres://app@db.internal/platform").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresLogStore {
    pool: PgPool,
    /// Connections of their own for claims and the bodies they send: a dispatcher's next work
    /// is claimed while its attempts are being recorded, and a claim queued behind a full
    /// pool's worth of those records would leave the runners idle meanwhile.
    claims: PgPool,
    /// Appends waiting to be written together.
    appends: Group<NewEntry, Result<Option<ClaimToken>, LogError>>,
    /// Attempts waiting to be recorded together.
    records: Group<AttemptRecord, Result<(), LogError>>,
}

/// How long `connect` waits for the server before it reports that it cannot reach it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl PostgresLogStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and
    /// applies the migrations. Fails within seconds, naming the problem, when the URL is bad or
    /// the server does not answer.
    pub async fn connect(url: &str) -> Result<Self, LogError> {
        let options: PgConnectOptions = url.parse().map_err(|e| LogError::Database {
            what: "reading the PostgreSQL URL (postgres://user:password@host:port/database)".into(),
            source: Box::new(e),
        })?;
        Self::connect_with(options).await
    }

    /// Like [`connect`](Self::connect), with the tables in `schema` (created if missing).
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self, LogError> {
        let options: PgConnectOptions = url.parse().map_err(|e| LogError::Database {
            what: "reading the PostgreSQL URL (postgres://user:password@host:port/database)".into(),
            source: Box::new(e),
        })?;
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        let mut conn = first_connection(&options).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {quoted}"
        )))
        .execute(&mut conn)
        .await
        .map_err(database(format!("creating schema {schema}")))?;
        Self::connect_with(options.options([("search_path", schema)])).await
    }

    /// Connects with ready-made options and applies the migrations, with the default pool:
    /// 16 connections and a 10 s acquire timeout (see [`connect_with_pool`](Self::connect_with_pool)).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, LogError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10));
        Self::connect_with_pool(options, pool).await
    }

    /// Like [`connect_with`](Self::connect_with), with the pool built from `pool`: its
    /// `max_connections`, timeouts and health checks. The log opens up to `max_connections`
    /// for appends, attempts and queries, plus [`CLAIM_CONNECTIONS`](Self::CLAIM_CONNECTIONS)
    /// more of the same kind for claims. With several instances on one server, keep
    /// instances × (`max_connections` + 2) under the server's own `max_connections` (100 by
    /// default).
    ///
    /// sqlx pings a connection each time it hands it out (`test_before_acquire`, on by
    /// default): one more round trip for every append and attempt, which on a 2-core machine
    /// with the server on loopback cost the dispatcher about a tenth of its events a second.
    /// Turning it off saves that round trip; after the server restarts, the first statement on
    /// each pooled connection then fails instead of being retried on a new one (an `emit`
    /// returns the error, and attempts pause for a few seconds).
    ///
    /// ```no_run
    /// use fermion_webhooks::store::PostgresLogStore;
    /// use fermion_webhooks::store::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let options: PgConnectOptions = "postgres://app@db.internal/platform".parse()?;
    /// // Six instances on a server allowing 100 connections: 6 × (12 + 2) = 84.
    /// let log = PostgresLogStore::connect_with_pool(options, PgPoolOptions::new().max_connections(12))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_with_pool(
        options: PgConnectOptions,
        pool: PgPoolOptions,
    ) -> Result<Self, LogError> {
        // One direct connection first: the pool would retry a refused connection until its
        // acquire timeout and then report only that it timed out.
        let mut first = first_connection(&options).await?;
        sqlx::migrate!("migrations/postgres")
            .run(&mut first)
            .await
            .map_err(|error| LogError::Database {
                what: "applying the event log's migrations".into(),
                source: Box::new(error),
            })?;
        drop(first);
        let claims = pool
            .clone()
            .min_connections(pool.get_min_connections().min(Self::CLAIM_CONNECTIONS))
            .max_connections(Self::CLAIM_CONNECTIONS);
        let connecting = database("connecting to PostgreSQL".into());
        let (pool, claims) = tokio::try_join!(
            pool.connect_with(options.clone()),
            claims.connect_with(options)
        )
        .map_err(connecting)?;
        Ok(Self {
            pool,
            claims,
            appends: Group::default(),
            records: Group::default(),
        })
    }

    /// How many connections the log keeps for claims, besides its pool.
    pub const CLAIM_CONNECTIONS: u32 = 2;

    /// The connection pool, for your own queries beside the log.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn first_connection(options: &PgConnectOptions) -> Result<PgConnection, LogError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(connected) => connected.map_err(database(format!(
            "connecting to PostgreSQL at {}:{}",
            options.get_host(),
            options.get_port()
        ))),
        Err(_) => Err(LogError::Database {
            what: format!(
                "connecting to PostgreSQL at {}:{}",
                options.get_host(),
                options.get_port()
            ),
            source: format!("no answer within {CONNECT_TIMEOUT:?}").into(),
        }),
    }
}

fn database(what: String) -> impl FnOnce(sqlx::Error) -> LogError {
    move |error| LogError::Database {
        what,
        source: Box::new(error),
    }
}

/// What a grouped write hears when its batch's task ended without answering (it panicked).
fn unanswered<T>(what: &str) -> Result<T, LogError> {
    Err(LogError::Database {
        what: what.into(),
        source: "its batch of writes ended without an answer".into(),
    })
}

fn corrupt(error: sqlx::Error) -> LogError {
    LogError::Corrupt {
        reason: error.to_string(),
    }
}

/// The columns a list or export reads; see the SQLite backend for `last_status`.
const ROW_COLUMNS: &str = "e.seq, e.event_unique_id, e.event_type, e.timestamp, \
     e.is_test_event, e.status, e.attempts, e.body, (SELECT a.http_status FROM fermion_attempts a \
     WHERE a.event_seq = e.seq AND a.http_status IS NOT NULL \
     ORDER BY a.started_at DESC, a.position DESC, a.id DESC LIMIT 1) AS last_status";

/// Where a list reads its rows from: the tables, the alias whose time and `seq` order the rows,
/// and the condition that keeps the status asked for. Pending and failed events are read
/// through their own table (`k`), in the order of its index by status and time: through the
/// events' time index instead, a filter for the few failed events among many newer delivered
/// ones would read every newer event. The two tables hold the same time and `seq` for an
/// event. Delivered events, the bulk of a log, are in no index of their own: they are found
/// through the time index.
struct RowsSource {
    tables: &'static str,
    key: &'static str,
    status: Option<&'static str>,
}

impl RowsSource {
    fn of(filter: &LogFilter) -> Self {
        const UNSETTLED: &str = "fermion_unsettled_events k JOIN fermion_events e ON e.seq = k.seq";
        let (tables, key, status) = match filter.status {
            Some(DeliveryState::Pending) => (UNSETTLED, "k", Some("k.status = 'pending'")),
            Some(DeliveryState::Failed) => (UNSETTLED, "k", Some("k.status = 'failed'")),
            Some(DeliveryState::Delivered) => {
                ("fermion_events e", "e", Some("e.status = 'delivered'"))
            }
            None => ("fermion_events e", "e", None),
        };
        Self {
            tables,
            key,
            status,
        }
    }
}

fn push_filter(
    sql: &mut QueryBuilder<Postgres>,
    filter: &LogFilter,
    source: &RowsSource,
    after: Option<(Position, bool)>,
) {
    let key = source.key;
    sql.push(" WHERE TRUE");
    if let Some(from) = filter.from {
        sql.push(format!(" AND {key}.timestamp >= "))
            .push_bind(from);
    }
    if let Some(to) = filter.to {
        sql.push(format!(" AND {key}.timestamp < ")).push_bind(to);
    }
    if !filter.kinds.is_empty() {
        let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
        sql.push(" AND e.event_type = ANY(")
            .push_bind(kinds)
            .push(")");
    }
    if let Some(status) = source.status {
        sql.push(" AND ").push(status);
    }
    if let Some(test) = filter.is_test_event {
        sql.push(" AND e.is_test_event = ").push_bind(test);
    }
    if !filter.endpoints.is_empty() {
        sql.push(
            " AND EXISTS (SELECT 1 FROM fermion_deliveries d WHERE d.event_seq = e.seq \
             AND d.endpoint_id = ANY(",
        )
        .push_bind(filter.endpoints.clone())
        .push("))");
    }
    if let Some((position, newer)) = after {
        let at = DateTime::from_timestamp_micros(position.micros).unwrap_or_default();
        let side = if newer { '>' } else { '<' };
        sql.push(format!(" AND ({key}.timestamp, {key}.seq) {side} ("))
            .push_bind(at)
            .push(", ")
            .push_bind(position.seq as i64)
            .push(")");
    }
}

fn event_row(row: &PgRow) -> Result<(i64, EventRow), LogError> {
    let status: String = row.try_get("status").map_err(corrupt)?;
    let last: Option<i32> = row.try_get("last_status").map_err(corrupt)?;
    let attempts: i32 = row.try_get("attempts").map_err(corrupt)?;
    Ok((
        row.try_get("seq").map_err(corrupt)?,
        EventRow {
            event_unique_id: row.try_get("event_unique_id").map_err(corrupt)?,
            event_type: row.try_get("event_type").map_err(corrupt)?,
            timestamp: row.try_get("timestamp").map_err(corrupt)?,
            is_test_event: row.try_get("is_test_event").map_err(corrupt)?,
            status: parse_state(&status)?,
            attempts: usize::try_from(attempts).unwrap_or(0),
            last_response_status: last.and_then(|s| u16::try_from(s).ok()),
            body: row.try_get("body").map_err(corrupt)?,
        },
    ))
}

#[async_trait]
impl EventTables for PostgresLogStore {
    async fn rows(
        &self,
        filter: &LogFilter,
        after: Option<Position>,
        oldest: bool,
        limit: usize,
    ) -> Result<Vec<(i64, EventRow)>, LogError> {
        let source = RowsSource::of(filter);
        let (tables, key) = (source.tables, source.key);
        let mut sql = QueryBuilder::new(format!("SELECT {ROW_COLUMNS} FROM {tables}"));
        push_filter(&mut sql, filter, &source, after.map(|p| (p, oldest)));
        let order = if oldest { "ASC" } else { "DESC" };
        sql.push(format!(
            " ORDER BY {key}.timestamp {order}, {key}.seq {order} LIMIT "
        ))
        .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(database("reading events".into()))?;
        rows.iter().map(event_row).collect()
    }

    async fn whole(&self, rows: Vec<(i64, EventRow)>) -> Result<Vec<StoredEvent>, LogError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<i64> = rows.iter().map(|(key, _)| *key).collect();
        let deliveries = sqlx::query(
            "SELECT event_seq, endpoint_id, url, state, next_attempt_at FROM fermion_deliveries \
             WHERE event_seq = ANY($1) ORDER BY event_seq, position",
        )
        .bind(&keys)
        .fetch_all(&self.pool)
        .await
        .map_err(database("reading deliveries".into()))?;
        let attempts = sqlx::query(
            "SELECT event_seq, endpoint_id, started_at, duration_ms, http_status, \
             response_snippet, error_kind, error_message, attempt_trigger, url FROM fermion_attempts \
             WHERE event_seq = ANY($1) ORDER BY event_seq, id",
        )
        .bind(&keys)
        .fetch_all(&self.pool)
        .await
        .map_err(database("reading attempts".into()))?;
        let deliveries = deliveries
            .iter()
            .map(|row| {
                let state: String = row.try_get("state").map_err(corrupt)?;
                Ok((
                    row.try_get("event_seq").map_err(corrupt)?,
                    Delivery {
                        endpoint_id: row.try_get("endpoint_id").map_err(corrupt)?,
                        url: row.try_get("url").map_err(corrupt)?,
                        state: parse_state(&state)?,
                        next_attempt_at: row.try_get("next_attempt_at").map_err(corrupt)?,
                        attempts: Vec::new(),
                    },
                ))
            })
            .collect::<Result<Vec<_>, LogError>>()?;
        let attempts = attempts
            .iter()
            .map(|row| {
                let status: Option<i32> = row.try_get("http_status").map_err(corrupt)?;
                let columns = AttemptColumns {
                    started_at: row.try_get("started_at").map_err(corrupt)?,
                    duration_ms: row.try_get("duration_ms").map_err(corrupt)?,
                    http_status: status.map(i64::from),
                    response_snippet: row.try_get("response_snippet").map_err(corrupt)?,
                    error_kind: row.try_get("error_kind").map_err(corrupt)?,
                    error_message: row.try_get("error_message").map_err(corrupt)?,
                    trigger: row.try_get("attempt_trigger").map_err(corrupt)?,
                    url: row.try_get("url").map_err(corrupt)?,
                };
                Ok((
                    row.try_get("event_seq").map_err(corrupt)?,
                    row.try_get("endpoint_id").map_err(corrupt)?,
                    columns.into_attempt()?,
                ))
            })
            .collect::<Result<Vec<_>, LogError>>()?;
        let events = rows
            .into_iter()
            .map(|(key, row)| (key, row.into_event()))
            .collect();
        Ok(assemble(events, deliveries, attempts))
    }
}

impl PostgresLogStore {
    /// Appends `event`, its pending deliveries claimed with `claim` when given, together with
    /// whatever other appends are waiting (see [`Group`]).
    async fn insert(
        &self,
        event: StoredEvent,
        claim: Option<(ClaimToken, DateTime<Utc>, &[&str])>,
    ) -> Result<Option<ClaimToken>, LogError> {
        validate_new_entry(&event)?;
        let claimed_until: Vec<Option<DateTime<Utc>>> = event
            .deliveries
            .iter()
            .map(|d| {
                claim
                    .as_ref()
                    .filter(|(_, _, endpoints)| {
                        d.state == DeliveryState::Pending
                            && endpoints.contains(&d.endpoint_id.as_str())
                    })
                    .map(|(_, until, _)| *until)
            })
            .collect();
        let token = claimed_until
            .iter()
            .any(Option::is_some)
            .then(|| claim.map(|(token, _, _)| token))
            .flatten();
        let pool = self.pool.clone();
        let entry = NewEntry {
            event,
            claimed_until,
            token,
        };
        self.appends
            .submit(entry, move |batch| append_batch(pool.clone(), batch))
            .await
            .unwrap_or_else(|| unanswered("appending an event"))
    }

    async fn get_event(&self, event_unique_id: &str) -> Result<Option<StoredEvent>, LogError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROW_COLUMNS} FROM fermion_events e WHERE e.event_unique_id = $1"
        )))
        .bind(event_unique_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database(format!("reading event {event_unique_id}")))?;
        let Some(row) = row else { return Ok(None) };
        Ok(self.whole(vec![event_row(&row)?]).await?.pop())
    }
}

#[async_trait]
impl LogStore for PostgresLogStore {
    async fn append(&self, event: StoredEvent) -> Result<(), LogError> {
        self.insert(event, None).await.map(drop)
    }

    async fn append_claimed(
        &self,
        event: StoredEvent,
        now: DateTime<Utc>,
        lease: Duration,
        endpoint_ids: &[&str],
    ) -> Result<Option<ClaimToken>, LogError> {
        let claim = (ClaimToken::new(), lease_end(now, lease), endpoint_ids);
        self.insert(event, Some(claim)).await
    }

    async fn claim_due(&self, request: &ClaimRequest) -> Result<Vec<DueDelivery>, LogError> {
        let token = ClaimToken::new();
        let until = lease_end(request.now, request.lease);
        // The endpoints with pending work, one index step each; then, for each one not
        // skipped and under its cap, its earliest due deliveries, no more than its room. They
        // are ranked per endpoint after the endpoint's live claims and taken round by round.
        // Each endpoint's candidates are locked as they are read, skipping those another
        // claimer holds: claimers at the same moment take the next deliveries instead of
        // picking the same ones and finding them all taken. The claimable condition is
        // checked again on the locked rows, so no delivery is claimed twice. Instances claiming at the same moment each count the live claims
        // before the other's land: an endpoint may then briefly hold up to one cap per
        // claimer. (Serialising claimers with a lock would need a transaction held across
        // round trips; a dispatcher cancelled in the middle would leave it held.)
        let rows: Vec<(String, String, String, DateTime<Utc>, i32)> = sqlx::query_as(
            "WITH RECURSIVE waiting (endpoint_id) AS ( \
               (SELECT endpoint_id FROM fermion_deliveries WHERE state = 'pending' \
                ORDER BY endpoint_id LIMIT 1) \
               UNION ALL \
               SELECT (SELECT d.endpoint_id FROM fermion_deliveries d \
                 WHERE d.state = 'pending' AND d.endpoint_id > w.endpoint_id \
                 ORDER BY d.endpoint_id LIMIT 1) \
               FROM waiting w WHERE w.endpoint_id IS NOT NULL), \
             busy AS (SELECT endpoint_id, count(*) AS held FROM fermion_deliveries \
               WHERE claim_token IS NOT NULL AND claimed_until > $3 GROUP BY endpoint_id), \
             open AS (SELECT w.endpoint_id, coalesce(busy.held, 0) AS held FROM waiting w \
               LEFT JOIN busy USING (endpoint_id) WHERE w.endpoint_id IS NOT NULL \
               AND NOT (w.endpoint_id = ANY($5::text[])) AND coalesce(busy.held, 0) < $6), \
             candidates AS (SELECT c.*, open.held FROM open CROSS JOIN LATERAL ( \
               SELECT d.event_seq, d.endpoint_id, d.position, d.next_attempt_at \
               FROM fermion_deliveries d WHERE d.state = 'pending' \
               AND d.endpoint_id = open.endpoint_id AND d.next_attempt_at <= $3 \
               AND (d.claimed_until IS NULL OR d.claimed_until <= $3) \
               ORDER BY d.next_attempt_at, d.event_seq, d.position \
               LIMIT least($6 - open.held, $4) FOR UPDATE OF d SKIP LOCKED) c), \
             ranked AS (SELECT candidates.*, held + row_number() OVER ( \
               PARTITION BY endpoint_id \
               ORDER BY next_attempt_at, event_seq, position) AS place FROM candidates), \
             chosen AS (SELECT event_seq, endpoint_id FROM ranked \
               ORDER BY place, next_attempt_at, event_seq, position LIMIT $4), \
             locked AS (SELECT d.event_seq, d.endpoint_id FROM fermion_deliveries d \
               JOIN chosen USING (event_seq, endpoint_id) WHERE d.state = 'pending' \
               AND (d.claimed_until IS NULL OR d.claimed_until <= $3) \
               FOR UPDATE OF d SKIP LOCKED) \
             UPDATE fermion_deliveries d SET claim_token = $1, claimed_until = $2 \
             FROM locked, fermion_events e \
             WHERE d.event_seq = locked.event_seq AND d.endpoint_id = locked.endpoint_id \
             AND e.seq = d.event_seq \
             RETURNING e.event_unique_id, d.endpoint_id, d.url, d.next_attempt_at, d.attempts",
        )
        .bind(token.as_str())
        .bind(until)
        .bind(request.now)
        .bind(request.limit_i64())
        .bind(&request.skip_endpoints)
        .bind(request.per_endpoint_i64())
        .fetch_all(&self.claims)
        .await
        .map_err(database("claiming due deliveries".into()))?;
        let claimed = rows
            .into_iter()
            .map(
                |(event_unique_id, endpoint_id, url, due, attempts)| DueDelivery {
                    event_unique_id,
                    endpoint_id,
                    url,
                    next_attempt_at: due,
                    attempts_made: usize::try_from(attempts).unwrap_or(0),
                    claim: token.clone(),
                    claimed_until: until,
                },
            )
            .collect();
        Ok(round_robin(claimed))
    }

    async fn backlog(&self) -> Result<Vec<EndpointBacklog>, LogError> {
        let rows: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT d.endpoint_id, count(*), min(e.timestamp) FROM fermion_deliveries d \
             JOIN fermion_events e ON e.seq = d.event_seq WHERE d.state = 'pending' \
             GROUP BY d.endpoint_id ORDER BY d.endpoint_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(database("reading the backlog".into()))?;
        Ok(rows
            .into_iter()
            .map(|(endpoint_id, pending, oldest)| EndpointBacklog {
                endpoint_id,
                pending: pending.try_into().unwrap_or(0),
                oldest,
            })
            .collect())
    }

    async fn claim(
        &self,
        event_unique_id: &str,
        endpoint_id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ClaimToken>, LogError> {
        let token = ClaimToken::new();
        let claimed = sqlx::query(
            "UPDATE fermion_deliveries d SET claim_token = $3, claimed_until = $4              FROM fermion_events e WHERE e.seq = d.event_seq AND e.event_unique_id = $1              AND d.endpoint_id = $2 AND (d.claimed_until IS NULL OR d.claimed_until <= $5)",
        )
        .bind(event_unique_id)
        .bind(endpoint_id)
        .bind(token.as_str())
        .bind(lease_end(now, lease))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(database(format!("claiming a delivery of {event_unique_id}")))?;
        if claimed.rows_affected() == 1 {
            return Ok(Some(token));
        }
        locate(&self.pool, event_unique_id, endpoint_id)
            .await
            .map(|_| None)
    }

    async fn release(&self, token: &ClaimToken) -> Result<(), LogError> {
        sqlx::query(
            "UPDATE fermion_deliveries SET claim_token = NULL, claimed_until = NULL \
             WHERE claim_token = $1",
        )
        .bind(token.as_str())
        .execute(&self.pool)
        .await
        .map_err(database("releasing claims".into()))?;
        Ok(())
    }

    async fn record_attempt(&self, record: AttemptRecord) -> Result<(), LogError> {
        let pool = self.pool.clone();
        self.records
            .submit(record, move |batch| record_batch(pool.clone(), batch))
            .await
            .unwrap_or_else(|| unanswered("recording an attempt"))
    }

    async fn get(&self, event_unique_id: &str) -> Result<Option<StoredEvent>, LogError> {
        self.get_event(event_unique_id).await
    }

    async fn bodies(&self, event_unique_ids: &[&str]) -> Result<Vec<EventBody>, LogError> {
        let rows: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT event_unique_id, body, is_test_event FROM fermion_events \
             WHERE event_unique_id = ANY($1)",
        )
        // `= ANY` finds each event once however often it is named.
        .bind(event_unique_ids)
        .fetch_all(&self.claims)
        .await
        .map_err(database("reading the bodies of claimed events".into()))?;
        Ok(rows
            .into_iter()
            .map(|(event_unique_id, body, is_test_event)| EventBody {
                event_unique_id,
                body,
                is_test_event,
            })
            .collect())
    }

    async fn query(
        &self,
        filter: &LogFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, LogError> {
        self.page(filter, cursor, limit).await
    }
    async fn scan(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.scan_events(filter, visit).await
    }

    async fn scan_rows(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(EventRow) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.scan_event_rows(filter, visit).await
    }

    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, LogError> {
        // One statement, so both tables change together: the events (their deliveries and
        // attempts by cascade) and the unsettled ones' status rows, which hold the same time.
        let deleted: i64 = sqlx::query_scalar(
            "WITH events AS (DELETE FROM fermion_events WHERE timestamp < $1 RETURNING 1), \
             unsettled AS (DELETE FROM fermion_unsettled_events WHERE timestamp < $1) \
             SELECT count(*) FROM events",
        )
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await
        .map_err(database("deleting old events".into()))?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }
}

#[async_trait]
impl Documents for PostgresLogStore {
    async fn put(
        &self,
        kind: Kind,
        key: &str,
        owner: Option<&str>,
        body: String,
    ) -> Result<(), LogError> {
        sqlx::query(
            "INSERT INTO fermion_documents (kind, key, owner, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, key) DO UPDATE SET owner = excluded.owner, body = excluded.body",
        )
        .bind(kind.as_str())
        .bind(key)
        .bind(owner)
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(database(format!("storing {} {key}", kind.as_str())))?;
        Ok(())
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<String>, LogError> {
        sqlx::query_scalar("SELECT body FROM fermion_documents WHERE kind = $1 AND key = $2")
            .bind(kind.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(database(format!("reading {} {key}", kind.as_str())))
    }

    async fn list(&self, kind: Kind, owner: Option<&str>) -> Result<Vec<String>, LogError> {
        sqlx::query_scalar(
            "SELECT body FROM fermion_documents WHERE kind = $1 \
             AND ($2::text IS NULL OR owner = $2) ORDER BY key",
        )
        .bind(kind.as_str())
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(database(format!("listing {}s", kind.as_str())))
    }

    async fn delete(&self, kind: Kind, key: &str) -> Result<bool, LogError> {
        let deleted = sqlx::query("DELETE FROM fermion_documents WHERE kind = $1 AND key = $2")
            .bind(kind.as_str())
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(database(format!("deleting {} {key}", kind.as_str())))?;
        Ok(deleted.rows_affected() > 0)
    }
}

/// A delivery state from its column.
fn parse_state(text: &str) -> Result<DeliveryState, LogError> {
    text.parse().map_err(|reason| LogError::Corrupt { reason })
}
