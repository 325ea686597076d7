//! Errors, and the one place that decides what each one means for the process.
//!
//! Every failure is either **definite** (bad config, missing prerequisite, data that can never
//! be written: retrying cannot help, so the operator or the dead-letter file must act) or
//! **transient** (a dropped socket, a server restarting, a timeout: retry with backoff and never
//! stop the process). [`Error::disposition`] is the only function that makes that call, and
//! [`Error::hint`] says what an operator can do.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("config {field}: {message}")]
    Config { field: String, message: String },

    #[error("{what}: {hint}")]
    Prerequisite { what: String, hint: String },

    #[error("postgres: {context}: {}", with_cause(source))]
    Postgres {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("replication: {context}: {source}")]
    Replication {
        context: String,
        #[source]
        source: pgwire_replication::PgWireError,
    },

    #[error("qdrant: {context}: {source}")]
    Qdrant {
        context: String,
        #[source]
        source: Box<qdrant_client::QdrantError>,
    },

    #[error("kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("pgoutput: {0}")]
    Decode(#[from] crate::source::pgoutput::DecodeError),

    /// An embedding service is busy or unreachable: retried, nothing acknowledged past it.
    #[error("embedder {embedder}: {reason}")]
    Embed {
        embedder: String,
        reason: String,
        /// When the service asked to be called again (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },

    /// A watched table gained a column the binary stream cannot carry: reconnect in text.
    #[error(
        "column {column:?} of {table} (type {type_oid}) {reason}; binary values cannot be mapped"
    )]
    TextNeeded {
        table: String,
        column: String,
        type_oid: u32,
        reason: &'static str,
    },

    #[error("stopped")]
    Shutdown,
}

/// An error's text followed by its causes (tokio-postgres keeps the useful part in the source).
fn with_cause(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What the process does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Retrying cannot help: stop (config, prerequisites) or dead-letter (one row or op).
    Definite,
    /// Retry with capped exponential backoff; never exit for it.
    Transient,
}

impl Error {
    pub fn config(field: impl Into<String>, message: String) -> Self {
        Error::Config {
            field: field.into(),
            message,
        }
    }
    pub fn prerequisite(what: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Prerequisite {
            what: what.into(),
            hint: hint.into(),
        }
    }
    pub fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| Error::Postgres { context, source }
    }
    pub fn qdrant(context: impl Into<String>) -> impl FnOnce(qdrant_client::QdrantError) -> Self {
        let context = context.into();
        move |source| Error::Qdrant {
            context,
            source: Box::new(source),
        }
    }
    pub fn kafka(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        let context = context.into();
        move |source| Error::Kafka { context, source }
    }
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
    pub fn replication(
        context: impl Into<String>,
    ) -> impl FnOnce(pgwire_replication::PgWireError) -> Self {
        let context = context.into();
        move |source| Error::Replication { context, source }
    }

    /// The one classification of every error the connector meets.
    pub fn disposition(&self) -> Disposition {
        use Disposition::*;
        match self {
            Error::Config { .. }
            | Error::Prerequisite { .. }
            | Error::Decode(_)
            | Error::Shutdown => Definite,
            Error::Io { .. } | Error::TextNeeded { .. } | Error::Embed { .. } => Transient,
            Error::Postgres { source, .. } => match source.code().map(|c| c.code()) {
                // No SQLSTATE: the connection broke or could not be opened.
                None => Transient,
                Some(code) => sqlstate_disposition(code),
            },
            Error::Replication { source, .. } => {
                if source.is_auth() || source.is_tls() {
                    Definite
                } else if let pgwire_replication::PgWireError::Server(msg) = source {
                    // The server error text carries "(SQLSTATE xxxxx)".
                    match msg
                        .rsplit_once("SQLSTATE ")
                        .map(|(_, c)| c.trim_end_matches(')'))
                    {
                        Some(code) => sqlstate_disposition(code),
                        None => Transient,
                    }
                } else {
                    Transient
                }
            }
            Error::Qdrant { source, .. } => qdrant_disposition(source),
            Error::Kafka { source, .. } => kafka_disposition(source),
        }
    }

    /// How long the other side asked us to wait before trying again, when it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Embed { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What an operator can do about it, when we know.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Replication { source, .. } if source.is_auth() => {
                Some("check the user and password in source.url; the user needs the REPLICATION attribute")
            }
            Error::Replication { source, .. } if source.to_string().contains("55006") => {
                Some("the slot is in use by another connection (or a crashed one not yet timed out); it is retried")
            }
            Error::Postgres { source, .. } if source.code().is_none() => Some("is PostgreSQL running and reachable at source.url?"),
            Error::Qdrant { .. } if self.disposition() == Disposition::Transient => {
                Some("is Qdrant running and reachable at qdrant.url (gRPC port)?")
            }
            Error::Kafka { .. } if self.disposition() == Disposition::Transient => {
                Some("are the brokers in kafka.brokers running and reachable (and kafka.properties right for their security)?")
            }
            _ => None,
        }
    }
}

/// SQLSTATE classes that go away by themselves.
fn sqlstate_disposition(code: &str) -> Disposition {
    let transient = code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources
        || code.starts_with("57P") // operator intervention: shutdown, crash, cannot connect now
        || code == "55006" // object in use: slot still held by an old walsender
        || code == "40001" // serialization failure
        || code == "40P01"; // deadlock
    if transient {
        Disposition::Transient
    } else {
        Disposition::Definite
    }
}

fn kafka_disposition(e: &rdkafka::error::KafkaError) -> Disposition {
    use rdkafka::error::KafkaError as K;
    use rdkafka::types::RDKafkaErrorCode as C;
    let definite_code = |c: C| {
        matches!(
            c,
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidRecord
                | C::InvalidMessage
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::InvalidTopic
                | C::InvalidConfig
                | C::InvalidReplicationFactor
                | C::InvalidPartitions
                | C::PolicyViolation
                | C::SaslAuthenticationFailed
                | C::Authentication
                | C::UnsupportedSASLMechanism
        )
    };
    match e {
        K::ClientConfig(..) | K::ClientCreation(_) | K::Subscription(_) => Disposition::Definite,
        K::MessageProduction(c) | K::AdminOp(c) | K::MessageConsumption(c) | K::Global(c)
            if definite_code(*c) =>
        {
            Disposition::Definite
        }
        _ => Disposition::Transient,
    }
}

fn qdrant_disposition(e: &qdrant_client::QdrantError) -> Disposition {
    use qdrant_client::QdrantError as Q;
    use tonic::Code;
    match e {
        Q::ResponseError { status } => match status.code() {
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented => Disposition::Definite,
            _ => Disposition::Transient,
        },
        Q::ResourceExhaustedError { .. } | Q::Io(_) => Disposition::Transient,
        Q::ConversionError(_) | Q::InvalidUri(_) => Disposition::Definite,
        _ => Disposition::Transient,
    }
}

/// Capped exponential backoff with a little jitter, for every retry loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: std::time::Duration,
    max: std::time::Duration,
}

impl Backoff {
    pub fn new(max: std::time::Duration) -> Self {
        Self {
            next: std::time::Duration::from_millis(100).min(max),
            max,
        }
    }
    /// The delay to wait now; doubles the next one up to the cap.
    pub fn next_delay(&mut self) -> std::time::Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.subsec_nanos() % 50)
            .unwrap_or(0);
        d + std::time::Duration::from_millis(u64::from(jitter))
    }
    pub fn reset(&mut self) {
        self.next = std::time::Duration::from_millis(100).min(self.max);
    }
}

/// Runs `f` until it succeeds or fails definitely; transient failures are logged as "{what}
/// failed; retrying" and retried with capped exponential backoff. Once `shutdown` is cancelled,
/// retries go on for `grace` at most (zero: stop at once, even mid-wait) and then
/// `Error::Shutdown` is returned.
pub async fn retry_transient<T, Fut>(
    what: &str,
    max: std::time::Duration,
    shutdown: &tokio_util::sync::CancellationToken,
    grace: std::time::Duration,
    mut f: impl FnMut() -> Fut,
) -> Result<T, Error>
where
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut backoff = Backoff::new(max);
    let mut stop_by: Option<tokio::time::Instant> = None;
    loop {
        // An attempt in flight (a request to a server that does not answer) is cut short too:
        // a stop waits the grace for it, no longer.
        let attempt = f();
        let known = stop_by;
        let stop = async {
            shutdown.cancelled().await;
            if !grace.is_zero() {
                let deadline = known.unwrap_or_else(|| tokio::time::Instant::now() + grace);
                tokio::time::sleep_until(deadline).await;
            }
        };
        let outcome = tokio::select! {
            r = attempt => r,
            _ = stop => return Err(Error::Shutdown),
        };
        match outcome {
            Ok(v) => return Ok(v),
            Err(e) if e.disposition() == Disposition::Transient => {
                // The other side's `Retry-After`, up to the backoff cap, if longer than ours.
                let delay = backoff
                    .next_delay()
                    .max(e.retry_after().unwrap_or_default().min(max));
                tracing::warn!(error = %e, hint = e.hint().unwrap_or(""), retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
                let mut sleep = delay;
                if shutdown.is_cancelled() {
                    let deadline =
                        *stop_by.get_or_insert_with(|| tokio::time::Instant::now() + grace);
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(Error::Shutdown);
                    }
                    // Never sleep past the grace.
                    sleep = sleep.min(deadline - now);
                }
                tokio::select! {
                    _ = shutdown.cancelled(), if grace.is_zero() => return Err(Error::Shutdown),
                    // A stop requested meanwhile: try once more now, then within the grace.
                    _ = shutdown.cancelled(), if stop_by.is_none() => {}
                    _ = tokio::time::sleep(sleep) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        assert_eq!(sqlstate_disposition("08006"), Disposition::Transient);
        assert_eq!(sqlstate_disposition("57P01"), Disposition::Transient);
        assert_eq!(sqlstate_disposition("55006"), Disposition::Transient);
        assert_eq!(sqlstate_disposition("42P01"), Disposition::Definite);
        assert_eq!(sqlstate_disposition("28P01"), Disposition::Definite);
    }

    #[test]
    fn backoff_is_capped() {
        let mut b = Backoff::new(std::time::Duration::from_millis(400));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert!(
            delays[0] < 200 && *delays.last().unwrap() < 460,
            "{delays:?}"
        );
    }

    fn busy(retry_after: u64) -> Error {
        Error::Embed {
            embedder: "e".into(),
            reason: "429".into(),
            retry_after: Some(std::time::Duration::from_secs(retry_after)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_waits_what_the_service_asked() {
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let r = retry_transient(
            "t",
            std::time::Duration::from_secs(30),
            &tokio_util::sync::CancellationToken::new(),
            std::time::Duration::ZERO,
            || {
                calls += 1;
                let first = calls == 1;
                async move {
                    if first {
                        Err(busy(7))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await;
        assert!(r.is_ok());
        assert!(started.elapsed() >= std::time::Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_is_not_held_by_a_long_retry_after() {
        let stop = tokio_util::sync::CancellationToken::new();
        let grace = std::time::Duration::from_secs(5);
        let started = tokio::time::Instant::now();
        let canceller = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            canceller.cancel();
        });
        let r: Result<(), Error> = retry_transient(
            "t",
            std::time::Duration::from_secs(60),
            &stop,
            grace,
            || async { Err(busy(60)) },
        )
        .await;
        assert!(matches!(r, Err(Error::Shutdown)), "{r:?}");
        // Virtual time: the stop came at 1 s, the grace ends at 6 s, not the 60 s asked for.
        assert!(
            started.elapsed() <= std::time::Duration::from_secs(7),
            "{:?}",
            started.elapsed()
        );
    }
}
