//! Errors, and the one place that decides what each one means for the process.
//!
//! Every failure is either **definite** (bad config, missing prerequisite, data that can never
//! be written: retrying cannot help, so the operator or the dead-letter file must act) or
//! **transient** (a dropped socket, a server restarting, a timeout: retry with backoff and never
//! stop the process). [`Error::disposition`] is the only function that makes that call, and
//! [`Error::hint`] says what an operator can do.

mod decode;
mod retry;

pub use decode::DecodeError;
pub use retry::{ok_if_stopped, retry_transient, retry_until_stopped, Backoff};

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
    Decode(#[from] DecodeError),

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

    /// A task of the process panicked or failed for good; the process stops (exit 1) and its
    /// supervisor restarts it: nothing is lost, the slot is acknowledged only after durable writes.
    #[error("task {task} failed: {reason}")]
    Task { task: String, reason: String },

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
            | Error::Task { .. }
            | Error::Shutdown => Definite,
            Error::Io { source, .. } => io_disposition(source.kind()),
            Error::TextNeeded { .. } | Error::Embed { .. } => Transient,
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

    /// Whether a definite error may be the fault of what was sent (one row, op or event), so
    /// sending the items one by one can find the one at fault and park it. Everything else is
    /// about the sink, the embedder or the process as a whole (credentials, a missing
    /// collection, a dead producer, config): an outage or a stop, and nothing is parked for it.
    pub fn blames_input(&self) -> bool {
        match self {
            Error::Qdrant { source, .. } => match &**source {
                qdrant_client::QdrantError::ResponseError { status } => {
                    use tonic::Code;
                    match status.code() {
                        Code::InvalidArgument | Code::OutOfRange | Code::AlreadyExists => true,
                        Code::NotFound => !missing_collection(status.message()),
                        _ => false,
                    }
                }
                qdrant_client::QdrantError::ConversionError(_) => true,
                _ => false,
            },
            Error::Kafka { source, .. } => kafka_code(source).is_some_and(|c| {
                use rdkafka::types::RDKafkaErrorCode as C;
                matches!(
                    c,
                    C::MessageSizeTooLarge
                        | C::InvalidMessageSize
                        | C::InvalidRecord
                        | C::InvalidMessage
                        | C::PolicyViolation
                )
            }),
            _ => false,
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
            Error::Io { .. } if self.disposition() == Disposition::Definite => Some(
                "check that the path exists and that this user may read and write it (checkpoint.path, dead_letter.path, embedders[].path); then start again",
            ),
            Error::Qdrant { source, .. } if qdrant_refused_credentials(source) => Some(
                "Qdrant refused the credentials: check qdrant.api_key (PG2QDRANT__QDRANT__API_KEY); the write is retried, nothing is parked, and the slot holds until Qdrant accepts it",
            ),
            Error::Qdrant { source, .. } if qdrant_refuses_writes(source) => Some(
                "Qdrant refuses writes to the collection as a whole (a write lock, a shard or the cluster not ready): retried until it takes them; nothing is parked and the slot holds",
            ),
            Error::Qdrant { source, .. } if qdrant_missing_collection(source) => Some(
                "the collection was deleted under the running connector: pg2qdrant stops without acknowledging the batch; its next start creates the collection again and copies its tables again (an applier: run `pg2qdrant resync --table` on the publisher)",
            ),
            Error::Qdrant { .. } if self.disposition() == Disposition::Transient => {
                Some("is Qdrant running and reachable at qdrant.url (gRPC port)?")
            }
            Error::Kafka { source, .. } if kafka_code(source) == Some(rdkafka::types::RDKafkaErrorCode::Fatal) => Some(
                "the Kafka producer failed for good (librdkafka's fatal state, e.g. its idempotence was broken): pg2qdrant stops so that its next start makes a new producer; the slot was not acknowledged past the undelivered events",
            ),
            Error::Kafka { .. } if self.disposition() == Disposition::Transient => {
                Some("are the brokers in kafka.brokers running and reachable (and kafka.properties right for their security)?")
            }
            _ => None,
        }
    }
}

/// File-system errors that stay until an operator acts (a wrong path, missing rights, a file
/// that is not what it should be) are definite; the rest (a disk briefly full, an interrupted
/// call, a socket) may pass.
fn io_disposition(kind: std::io::ErrorKind) -> Disposition {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound
        | K::PermissionDenied
        | K::AlreadyExists
        | K::InvalidInput
        | K::InvalidData
        | K::IsADirectory
        | K::NotADirectory
        | K::ReadOnlyFilesystem
        | K::Unsupported => Disposition::Definite,
        _ => Disposition::Transient,
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

/// The broker's or client's error code, where the error carries one.
fn kafka_code(e: &rdkafka::error::KafkaError) -> Option<rdkafka::types::RDKafkaErrorCode> {
    use rdkafka::error::KafkaError as K;
    match e {
        K::MessageProduction(c) | K::AdminOp(c) | K::MessageConsumption(c) | K::Global(c) => {
            Some(*c)
        }
        _ => None,
    }
}

/// Refused credentials or rights (a rotated password, a removed ACL) refuse every event alike:
/// an outage, retried until they are fixed. A message the broker refuses for itself is
/// definite (and parked, see [`Error::blames_input`]); so is a producer in librdkafka's fatal
/// state (`_FATAL`: every produce fails until the instance is replaced), which stops the process.
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
                | C::InvalidTopic
                | C::InvalidConfig
                | C::InvalidReplicationFactor
                | C::InvalidPartitions
                | C::PolicyViolation
                | C::UnsupportedSASLMechanism
                | C::Fatal
        )
    };
    match e {
        K::ClientConfig(..) | K::ClientCreation(_) | K::Subscription(_) => Disposition::Definite,
        _ if kafka_code(e).is_some_and(definite_code) => Disposition::Definite,
        _ => Disposition::Transient,
    }
}

/// Qdrant's answer for a collection that does not exist ("Collection `x` doesn't exist!").
fn missing_collection(message: &str) -> bool {
    message.contains("Collection")
        && (message.contains("doesn't exist") || message.contains("not found"))
}

fn qdrant_status(e: &qdrant_client::QdrantError) -> Option<&tonic::Status> {
    match e {
        qdrant_client::QdrantError::ResponseError { status } => Some(status),
        _ => None,
    }
}

fn qdrant_refused_credentials(e: &qdrant_client::QdrantError) -> bool {
    qdrant_status(e).is_some_and(|s| {
        matches!(
            s.code(),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
        )
    })
}

fn qdrant_refuses_writes(e: &qdrant_client::QdrantError) -> bool {
    qdrant_status(e).is_some_and(|s| s.code() == tonic::Code::FailedPrecondition)
}

fn qdrant_missing_collection(e: &qdrant_client::QdrantError) -> bool {
    qdrant_status(e)
        .is_some_and(|s| s.code() == tonic::Code::NotFound && missing_collection(s.message()))
}

fn qdrant_disposition(e: &qdrant_client::QdrantError) -> Disposition {
    use qdrant_client::QdrantError as Q;
    use tonic::Code;
    match e {
        // A refused key or missing rights refuse every write alike: an outage (retried until an
        // operator fixes the key; `/readyz` says so). A missing collection is definite but no
        // row's fault (see `Error::blames_input`): the process stops and its next start
        // recreates the collection and copies again.
        // `FailedPrecondition` is Qdrant's answer for writes refused to the collection as a
        // whole (a write lock, a shard or the cluster not ready): an outage too.
        Q::ResponseError { status } => match status.code() {
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::Unimplemented => Disposition::Definite,
            _ => Disposition::Transient,
        },
        Q::ResourceExhaustedError { .. } | Q::Io(_) => Disposition::Transient,
        Q::ConversionError(_) | Q::InvalidUri(_) => Disposition::Definite,
        _ => Disposition::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_by_kind() {
        let io = |k: std::io::ErrorKind| {
            Error::io("write checkpoint /x")(std::io::Error::from(k)).disposition()
        };
        assert_eq!(
            io(std::io::ErrorKind::PermissionDenied),
            Disposition::Definite
        );
        assert_eq!(io(std::io::ErrorKind::NotFound), Disposition::Definite);
        assert_eq!(io(std::io::ErrorKind::Interrupted), Disposition::Transient);
        assert_eq!(
            io(std::io::ErrorKind::ConnectionReset),
            Disposition::Transient
        );
        let e = Error::io("write checkpoint /x")(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        ));
        assert!(
            e.hint().unwrap().contains("checkpoint.path"),
            "{:?}",
            e.hint()
        );
    }

    #[test]
    fn a_sink_wide_refusal_is_an_outage_and_only_a_rows_fault_is_parked() {
        let qdrant = |code, msg: &str| {
            Error::qdrant("write")(qdrant_client::QdrantError::ResponseError {
                status: tonic::Status::new(code, msg.to_owned()),
            })
        };
        use tonic::Code;
        for code in [Code::Unauthenticated, Code::PermissionDenied] {
            let e = qdrant(code, "Invalid api-key");
            assert_eq!(e.disposition(), Disposition::Transient, "{e}");
            assert!(e.hint().unwrap().contains("qdrant.api_key"));
        }
        let gone = qdrant(Code::NotFound, "Not found: Collection `c` doesn't exist!");
        assert_eq!(gone.disposition(), Disposition::Definite);
        assert!(
            !gone.blames_input(),
            "a missing collection is not a row's fault"
        );
        assert!(gone
            .hint()
            .unwrap()
            .contains("creates the collection again"));
        let locked = qdrant(Code::FailedPrecondition, "Write operations are forbidden");
        assert_eq!(locked.disposition(), Disposition::Transient);
        assert!(!locked.blames_input());
        let bad = qdrant(Code::InvalidArgument, "Wrong input: vector dimension error");
        assert_eq!(bad.disposition(), Disposition::Definite);
        assert!(bad.blames_input());
        let kafka = |c| Error::kafka("produce")(rdkafka::error::KafkaError::MessageProduction(c));
        use rdkafka::types::RDKafkaErrorCode as C;
        for c in [
            C::TopicAuthorizationFailed,
            C::SaslAuthenticationFailed,
            C::Authentication,
        ] {
            assert_eq!(kafka(c).disposition(), Disposition::Transient, "{c:?}");
        }
        let fatal = kafka(C::Fatal);
        assert_eq!(fatal.disposition(), Disposition::Definite);
        assert!(!fatal.blames_input());
        assert!(fatal.hint().unwrap().contains("new producer"));
        assert!(kafka(C::MessageSizeTooLarge).blames_input());
        assert!(!Error::config("x", "y".into()).blames_input());
    }

    #[test]
    fn sqlstates_are_classified() {
        assert_eq!(sqlstate_disposition("08006"), Disposition::Transient);
        assert_eq!(sqlstate_disposition("57P01"), Disposition::Transient);
        assert_eq!(sqlstate_disposition("55006"), Disposition::Transient);
        assert_eq!(sqlstate_disposition("42P01"), Disposition::Definite);
        assert_eq!(sqlstate_disposition("28P01"), Disposition::Definite);
    }
}
