//! librdkafka clients from `[kafka]`, topic creation and partition counts.
//!
//! Every client gets `bootstrap.servers` and the section's `properties` (security, SASL, TLS).
//! The producer adds what the delivery guarantee needs: idempotence (no duplicate and no
//! reordering inside a partition across librdkafka's own retries), `acks=all`, and
//! `compression.type` (lz4 unless set). The consumer commits only what `apply` tells it to,
//! and refreshes its topics' metadata every 30 s unless set (partitions added to a topic are
//! consumed from then on).

use crate::config::KafkaConfig;
use crate::error::Error;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long one metadata or admin request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn base(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    // librdkafka's own lines (warnings and worse) go to our log through `Logs`. (The level is
    // the config's field, not the `log_level` property: rdkafka sets it on the client after
    // the properties, from the `log` crate's level when not told, which is "errors only".)
    c.set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// What librdkafka said about a config it refused, naming the section.
pub(super) fn refused(e: rdkafka::error::KafkaError) -> Error {
    Error::config(
        "kafka.properties",
        format!("librdkafka refused the client configuration: {e}"),
    )
}

/// Our clients' context: librdkafka's log lines become our log lines (structured, JSON with
/// `log.format = "json"`), target `librdkafka`. librdkafka never prints secret properties.
/// The publisher's producer context as well (its delivery reports: `delivery.rs`). It keeps the
/// last client-level error, which says why a request failed when the request's own error does
/// not (a refused SASL password surfaces as a metadata timeout).
#[derive(Default)]
pub struct Logs {
    errors: std::sync::Mutex<ClientErrors>,
}

/// What a client was told went wrong: the last error, and the first refusal of its credentials
/// (kept: other errors, e.g. another address of the same name refusing the connection, come
/// between the retries and would hide it).
#[derive(Debug, Default, Clone)]
pub struct ClientErrors {
    pub last: Option<String>,
    pub credentials_refused: Option<String>,
}

impl Logs {
    pub fn errors(&self) -> ClientErrors {
        self.errors.lock().expect("client errors lock").clone()
    }
}

fn forward(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

impl rdkafka::ClientContext for Logs {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward(level, fac, log_message);
    }
    /// "All brokers down" follows the error that says why (a refused password, TLS, no route):
    /// that one is kept.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        client_error(&error, reason);
        let mut errors = self.errors.lock().expect("client errors lock");
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) | None => {}
            Some(RDKafkaErrorCode::Authentication) => {
                errors
                    .credentials_refused
                    .get_or_insert_with(|| reason.to_owned());
                errors.last = Some(reason.to_owned());
            }
            Some(_) => errors.last = Some(reason.to_owned()),
        }
    }
}

/// A client-level error librdkafka reports (a broker down, authentication failed): logged;
/// the calls that need the broker fail and are retried on their own.
fn client_error(error: &rdkafka::error::KafkaError, reason: &str) {
    tracing::warn!(target: "librdkafka", error = %error, "{reason}");
}

/// A producer awaited per message (the dead-letter topic's: one message now and then).
pub type Producer = FutureProducer<Logs>;

pub fn producer(cfg: &KafkaConfig) -> Result<Producer, Error> {
    producer_config(cfg)
        .create_with_context(Logs::default())
        .map_err(refused)
}

/// Whether librdkafka takes the producer's properties, without a producer's polling thread
/// (for a producer made later, at first use).
pub fn check_producer(cfg: &KafkaConfig) -> Result<(), Error> {
    producer_config(cfg)
        .create::<rdkafka::producer::BaseProducer>()
        .map(drop)
        .map_err(refused)
}

pub(super) fn producer_config(cfg: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut c = base(cfg);
    if !cfg.properties.contains_key("compression.type") {
        c.set("compression.type", crate::config::DEFAULT_COMPRESSION);
    }
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        // Our writer retries forever with backoff; a delivery that cannot be made in two
        // minutes is reported to it (and the whole batch is produced again).
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "5");
    c
}

/// Logs the group's partition assignments (who owns what is the first question when lag grows),
/// counts revocations (an offset taken before one may be stale once it is committed, see
/// `apply`'s commits), and makes a revocation wait until the member's writes are durable.
///
/// **Why a revocation waits.** A partition's next owner starts from its committed offset. If
/// this member's write of an older change of row X were still in flight when the next owner
/// applies X's later DELETE, the write would land on a point that is gone, and Qdrant inserts a
/// point it does not find whatever the fence: X would come back as a ghost. So before giving up
/// partitions (the eager protocol: every partition is revoked, then assigned again), the member
/// waits until every batch it handed to its writer is durable (their offsets are committed as
/// they become durable, still under the old assignment), for at most [`DRAIN_LIMIT`]; the batch
/// it was still taking is dropped by the consumer loop (its messages come again from the
/// committed offsets, here or at the next owner).
#[derive(Default)]
pub struct GroupLog {
    revocations: std::sync::atomic::AtomicU64,
    /// Whether the member has no batch in flight (set once by the applier).
    idle: std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

/// How long a revocation waits for the member's writes to become durable. Past it (Qdrant down
/// through a rebalance) the partitions are given up anyway, so the group goes on; a write still
/// in flight may then bring back a row deleted meanwhile (logged: run `verify --repair`).
pub const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

impl GroupLog {
    /// Partition revocations so far (a rebalance took partitions from this member).
    pub fn revocations(&self) -> u64 {
        self.revocations.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes every revocation wait (up to [`DRAIN_LIMIT`]) until `idle` says no write is in
    /// flight. Set once; a second call is ignored.
    pub fn wait_on_revoke(&self, idle: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.idle.set(Box::new(idle));
    }

    /// Waits until the member is idle or [`DRAIN_LIMIT`] passed, letting the runtime's other
    /// tasks (the writer) run meanwhile.
    fn drain(&self) {
        let Some(idle) = self.idle.get() else { return };
        if idle() {
            return;
        }
        tracing::info!("partitions to give up: waiting for the writes in flight to become durable");
        let started = std::time::Instant::now();
        crate::blocking::off_runtime(|| {
            while !idle() && started.elapsed() < DRAIN_LIMIT {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        if idle() {
            tracing::info!(
                waited_ms = started.elapsed().as_millis() as u64,
                "writes in flight made durable before giving up partitions"
            );
        } else {
            tracing::warn!(waited_s = DRAIN_LIMIT.as_secs(), "partitions given up with writes still in flight (Qdrant down?): a row deleted meanwhile by the partitions' next owner may come back; run `pg2qdrant verify --repair` once the group caught up");
        }
    }
}

impl std::fmt::Debug for GroupLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupLog")
            .field("revocations", &self.revocations())
            .finish_non_exhaustive()
    }
}

impl rdkafka::ClientContext for GroupLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward(level, fac, log_message);
    }
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for GroupLog {
    fn pre_rebalance(
        &self,
        _: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Revoke(_) = rebalance {
            self.drain();
        }
    }

    fn post_rebalance(
        &self,
        _: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::Rebalance;
        let list = |l: &rdkafka::TopicPartitionList| {
            l.elements()
                .iter()
                .map(|e| format!("{}[{}]", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match rebalance {
            Rebalance::Assign(l) => tracing::info!(partitions = %list(l), "partitions assigned"),
            Rebalance::Revoke(l) => {
                self.revocations
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(partitions = %list(l), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

pub type GroupConsumer = StreamConsumer<GroupLog>;

const METADATA_REFRESH: &str = "topic.metadata.refresh.interval.ms";
/// How often an applier looks for partitions added to its topics.
pub const CONSUMER_METADATA_REFRESH_MS: &str = "30000";

/// A consumer of `apply`: offsets are stored and committed only by `apply`.
pub fn consumer(cfg: &KafkaConfig) -> Result<GroupConsumer, Error> {
    let mut c = base(cfg);
    if !cfg.properties.contains_key("auto.offset.reset") {
        c.set("auto.offset.reset", "earliest");
    }
    // Partitions added to a topic join the group's assignment at the next metadata refresh
    // (librdkafka's default: 5 minutes).
    if !cfg.properties.contains_key(METADATA_REFRESH) {
        c.set(METADATA_REFRESH, CONSUMER_METADATA_REFRESH_MS);
    }
    c.set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(GroupLog::default())
        .map_err(refused)
}

fn admin(cfg: &KafkaConfig) -> Result<AdminClient<Logs>, Error> {
    base(cfg)
        .create_with_context(Logs::default())
        .map_err(refused)
}

/// A client for metadata requests: a producer's, because polling it delivers the client-level
/// errors (a refused password, a failed TLS handshake) that say why a request failed; the admin
/// client's are never polled.
type MetadataClient = Arc<rdkafka::producer::BaseProducer<Logs>>;

fn metadata_client(cfg: &KafkaConfig) -> Result<MetadataClient, Error> {
    Ok(Arc::new(
        base(cfg)
            .create_with_context(Logs::default())
            .map_err(refused)?,
    ))
}

/// Partition counts of `topics` that exist (a metadata request).
pub async fn partitions(
    cfg: &KafkaConfig,
    topics: &[String],
) -> Result<HashMap<String, i32>, Error> {
    read_partitions(&metadata_client(cfg)?, topics).await
}

/// [`partitions`] through a client of the caller's. A failure says why, from the client's own
/// errors: credentials the brokers refuse are a config error naming the fix (there is nothing
/// to wait for at start; a refusal while running fails a delivery instead, retried as an
/// outage), anything else keeps the request's error with the client's last one beside it.
async fn read_partitions(
    client: &MetadataClient,
    topics: &[String],
) -> Result<HashMap<String, i32>, Error> {
    use rdkafka::producer::Producer as _;
    let fetching = client.clone();
    let read = counts(
        move || fetching.client().fetch_metadata(None, REQUEST_TIMEOUT),
        topics,
    )
    .await;
    let Err(Error::Kafka { context, source }) = read else {
        return read;
    };
    // Every queued event is handled within this (the client is idle by now).
    client.poll(Duration::from_millis(100));
    let errors = client.client().context().errors();
    match (errors.credentials_refused, errors.last) {
        (Some(why), _) => Err(Error::config(
            "kafka.properties",
            format!(
                "the brokers refused the client's credentials ({why}): fix sasl.username and \
                 sasl.password (the password from PG2QDRANT__KAFKA__PROPERTIES__SASL_PASSWORD), \
                 or sasl.mechanism"
            ),
        )),
        (None, Some(why)) => Err(Error::Kafka {
            context: format!("{context} (the client's last error: {why})"),
            source,
        }),
        (None, None) => Err(Error::Kafka { context, source }),
    }
}

/// Partition counts of `topics` in the metadata `fetch` reads (blocking, run off the runtime).
pub(super) async fn counts(
    fetch: impl FnOnce() -> rdkafka::error::KafkaResult<rdkafka::metadata::Metadata> + Send + 'static,
    topics: &[String],
) -> Result<HashMap<String, i32>, Error> {
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let md = fetch().map_err(Error::kafka("reading the brokers' metadata"))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| topics.iter().any(|w| w == t.name()) && t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
            .collect())
    })
    .await
    .map_err(|e| Error::prerequisite(format!("metadata task: {e}"), "this is a bug"))?
}

/// Whether the brokers would create `topic` with the configured settings (validate only).
pub async fn can_create(cfg: &KafkaConfig, topic: &str) -> Result<(), Error> {
    let admin = admin(cfg)?;
    let new = [NewTopic::new(
        topic,
        cfg.partitions,
        TopicReplication::Fixed(cfg.replication_factor),
    )];
    let opts = AdminOptions::new()
        .validate_only(true)
        .operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .map_err(Error::kafka("validating topic creation"))?;
    match results.into_iter().next() {
        Some(Err((_, code))) if code != RDKafkaErrorCode::TopicAlreadyExists => {
            Err(Error::kafka(format!("creating topic {topic}"))(
                rdkafka::error::KafkaError::AdminOp(code),
            ))
        }
        _ => Ok(()),
    }
}

/// Creates the topics that do not exist (with `partitions` and `replication_factor`) and
/// returns every topic's partition count.
pub async fn ensure_topics(
    cfg: &KafkaConfig,
    topics: &[String],
) -> Result<HashMap<String, i32>, Error> {
    let client = metadata_client(cfg)?;
    let existing = read_partitions(&client, topics).await?;
    let missing: Vec<&String> = topics
        .iter()
        .filter(|t| !existing.contains_key(*t))
        .collect();
    if !missing.is_empty() {
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    cfg.partitions,
                    TopicReplication::Fixed(cfg.replication_factor),
                )
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = admin(cfg)?
            .create_topics(&new, &opts)
            .await
            .map_err(Error::kafka("creating topics"))?;
        for r in results {
            match r {
                Ok(topic) => tracing::info!(
                    topic,
                    partitions = cfg.partitions,
                    replication_factor = cfg.replication_factor,
                    "created topic"
                ),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(Error::kafka(format!("creating topic {topic}"))(
                        rdkafka::error::KafkaError::AdminOp(code),
                    ))
                }
            }
        }
    }
    // Read back: a topic created by someone else keeps its own partition count.
    for _ in 0..20 {
        let now = read_partitions(&client, topics).await?;
        if topics.iter().all(|t| now.get(t).is_some_and(|n| *n > 0)) {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(Error::Kafka {
        context: format!("topics {topics:?} do not show in the brokers' metadata after creation"),
        source: rdkafka::error::KafkaError::AdminOp(RDKafkaErrorCode::UnknownTopicOrPartition),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;
    use rdkafka::ClientContext as _;

    #[test]
    fn a_refused_password_is_kept_through_the_errors_that_follow_it() {
        let logs = Logs::default();
        logs.error(
            KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: invalid credentials",
        );
        logs.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "[::1]:9093: Connection refused",
        );
        logs.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let errors = logs.errors();
        assert_eq!(
            errors.credentials_refused.as_deref(),
            Some("SASL authentication error: invalid credentials")
        );
        assert_eq!(
            errors.last.as_deref(),
            Some("[::1]:9093: Connection refused")
        );
        assert!(Logs::default().errors().credentials_refused.is_none());
    }
}
