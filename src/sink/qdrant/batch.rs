//! The write request itself, sent as `/qdrant.Points/UpdateBatch` over our own channel.
//!
//! qdrant-client's `update_points_batch` clones the whole request (every vector and payload of
//! the batch) before sending it, for the retry wrapper around its channel pool; the profile of a
//! 384-float stream showed that copy and its allocations. The destination retries on its own
//! (`pipeline::to_qdrant`), so the request is encoded once per attempt, straight from the
//! documents (`encode`), and its bytes go out as they are. The channel is made from the same
//! settings as the `Qdrant` client (URL, TLS for `https`, timeouts, API key as the `api-key`
//! header) and connects lazily, reconnecting after a failure.

use super::encode::{Encoded, Update};
use crate::error::Error;
use qdrant_client::qdrant::UpdateBatchResponse;
use qdrant_client::{Qdrant, QdrantError};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

#[derive(Clone)]
pub struct BatchWriter {
    grpc: tonic::client::Grpc<Channel>,
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
            grpc: tonic::client::Grpc::new(endpoint.connect_lazy())
                .max_decoding_message_size(usize::MAX),
            api_key,
        })
    }

    /// Applies `updates` to `collection` in order and waits until they are applied. The
    /// request is encoded from the documents (see `encode`) and sent as `UpdateBatch`.
    pub async fn write(&self, collection: &str, updates: &[Update<'_>]) -> Result<(), QdrantError> {
        let mut request = tonic::Request::new(super::encode::request(collection, updates));
        if let Some(k) = &self.api_key {
            request.metadata_mut().insert("api-key", k.clone());
        }
        request
            .extensions_mut()
            .insert(tonic::GrpcMethod::new("qdrant.Points", "UpdateBatch"));
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
        let codec = tonic_prost::ProstCodec::<Encoded, UpdateBatchResponse>::default();
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/qdrant.Points/UpdateBatch");
        grpc.unary(request, path, codec)
            .await
            .map(|_| ())
            .map_err(QdrantError::from)
    }
}
