//! The write request itself, sent through the generated gRPC client over our own channel.
//!
//! qdrant-client's `update_points_batch` clones the whole request (every vector and payload of
//! the batch) before sending it, for the retry wrapper around its channel pool; the profile of a
//! 384-float stream showed that copy and its allocations. The destination retries on its own
//! (`pipeline::to_qdrant`), so the request is built once per attempt and moved into the call. The
//! channel is made from the same settings as the `Qdrant` client (URL, TLS for `https`, timeouts,
//! API key as the `api-key` header) and connects lazily, reconnecting after a failure.

use crate::error::Error;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::{PointsUpdateOperation, UpdateBatchPoints};
use qdrant_client::{Qdrant, QdrantError};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

#[derive(Clone)]
pub struct BatchWriter {
    points: PointsClient<Channel>,
    api_key: Option<MetadataValue<Ascii>>,
}

impl BatchWriter {
    /// A writer with the settings of `client`.
    pub fn new(client: &Qdrant) -> Result<Self, Error> {
        let cfg = &client.config;
        let bad = |what: String| {
            Error::prerequisite(
                format!("qdrant.url {:?}: {what}", cfg.uri),
                "use http://host:6334 (or https://) for the gRPC port",
            )
        };
        let mut endpoint = Endpoint::from_shared(cfg.uri.clone())
            .map_err(|e| bad(e.to_string()))?
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .keep_alive_while_idle(cfg.keep_alive_while_idle);
        if cfg.uri.starts_with("https") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| bad(e.to_string()))?;
        }
        let api_key = match &cfg.api_key {
            Some(k) => Some(k.parse().map_err(|_| {
                Error::config("qdrant.api_key", "is not a valid header value".to_owned())
            })?),
            None => None,
        };
        Ok(Self {
            points: PointsClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(usize::MAX),
            api_key,
        })
    }

    /// Applies `operations` to `collection` in order and waits until they are applied.
    pub async fn write(
        &self,
        collection: &str,
        operations: Vec<PointsUpdateOperation>,
    ) -> Result<(), QdrantError> {
        let mut request = tonic::Request::new(UpdateBatchPoints {
            collection_name: collection.to_owned(),
            wait: Some(true),
            operations,
            ordering: None,
            timeout: None,
        });
        if let Some(k) = &self.api_key {
            request.metadata_mut().insert("api-key", k.clone());
        }
        self.points
            .clone()
            .update_batch(request)
            .await
            .map(|_| ())
            .map_err(QdrantError::from)
    }
}
