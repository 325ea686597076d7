//! Any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM, TEI, llama.cpp):
//! `POST {url}/embeddings` with `{"model", "input": [...], "dimensions"?}`, answered by
//! `{"data": [{"index", "embedding"}]}`. The API key comes from an environment variable and is
//! never logged.
//!
//! Failures are classified for the caller: 429, 5xx, timeouts and connection errors are
//! transient (retried, honouring `Retry-After`; the rows wait, nothing is acknowledged past them),
//! any other 4xx is definite for the inputs of that call (the caller splits the batch to find the
//! input at fault and dead-letters it).

use super::{EmbedError, Embedded};
use crate::config::EmbedderConfig;
use crate::error::Error;
use serde_json::{json, Value};
use std::time::Duration;

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoint: String,
    model: String,
    api_key: Option<String>,
    dimensions: Option<usize>,
    identity: String,
}

impl OpenAiEmbedder {
    pub fn new(i: usize, c: &EmbedderConfig) -> Result<Self, Error> {
        let field = |name: &str| format!("embedders[{i}].{name}");
        let url = c.url.clone().ok_or_else(|| {
            Error::config(
                field("url"),
                "required for kind = \"openai\" (e.g. https://api.openai.com/v1)".to_owned(),
            )
        })?;
        let model = c.model.clone().ok_or_else(|| {
            Error::config(field("model"), "required for kind = \"openai\"".to_owned())
        })?;
        let api_key = match &c.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                Error::config(
                    field("api_key_env"),
                    format!("the environment variable {var} is not set"),
                )
            })?),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(c.timeout_ms))
            .build()
            .map_err(|e| Error::config(field("url"), format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            endpoint: format!("{}/embeddings", url.trim_end_matches('/')),
            identity: identity(c),
            model,
            api_key,
            dimensions: c.dimensions,
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The configured dimensions (the service's own when not configured: checked on each answer).
    pub fn dimensions(&self) -> Option<usize> {
        self.dimensions
    }

    /// One request for `inputs`.
    pub async fn embed(&self, inputs: &[&str]) -> Result<Embedded, EmbedError> {
        let mut body = json!({"model": self.model, "input": inputs});
        if let Some(d) = self.dimensions {
            body["dimensions"] = json!(d);
        }
        let mut req = self.client.post(&self.endpoint).json(&body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.map_err(|e| EmbedError::Transient {
            reason: format!("{}: {}", self.endpoint, without_url(e)),
            retry_after: None,
        })?;
        let status = resp.status();
        if status.as_u16() == 429 || status.is_server_error() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(EmbedError::Transient {
                reason: format!("{} answered {status}", self.endpoint),
                retry_after,
            });
        }
        let text = resp.text().await.map_err(|e| EmbedError::Transient {
            reason: format!("{}: {}", self.endpoint, without_url(e)),
            retry_after: None,
        })?;
        if !status.is_success() {
            let detail: String = text.chars().take(300).collect();
            let reason = format!("{} answered {status}: {detail}", self.endpoint);
            // Only a refusal of what was sent (400, 413, 422, ...) can be the inputs' fault; a
            // refused key, a forbidden or unknown model or endpoint refuses every input alike:
            // an outage, retried until the service or its settings are fixed.
            return Err(if outage(status.as_u16()) {
                EmbedError::Transient {
                    reason: format!("{reason} (check embedders[].url, model and api_key)"),
                    retry_after: None,
                }
            } else {
                EmbedError::Definite(reason)
            });
        }
        // A success whose body is not the answer for these inputs is the service's (or its
        // settings') fault, never an input's: an outage like the refusals above.
        self.answer(&text, inputs.len())
            .map_err(|reason| EmbedError::Transient {
                reason: format!("{}: {reason}", self.endpoint),
                retry_after: None,
            })
    }

    /// The vectors of a successful answer for `n` inputs.
    fn answer(&self, text: &str, n: usize) -> Result<Embedded, String> {
        let answer: Value =
            serde_json::from_str(text).map_err(|e| format!("answer is not JSON: {e}"))?;
        let data = answer["data"]
            .as_array()
            .ok_or_else(|| "answer has no data array".to_owned())?;
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; n];
        for (n, item) in data.iter().enumerate() {
            let index = item["index"].as_u64().map_or(n, |i| i as usize);
            let v: Vec<f32> = item["embedding"]
                .as_array()
                .ok_or_else(|| "an answer item has no embedding".to_owned())?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| "an embedding holds a non-number".to_owned())?;
            if let Some(d) = self.dimensions {
                if v.len() != d {
                    return Err(format!(
                        "the service returned {} dimensions, {d} configured",
                        v.len()
                    ));
                }
            }
            *vectors
                .get_mut(index)
                .ok_or_else(|| format!("answer index {index} out of range"))? = Some(v);
        }
        let vectors = vectors
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| "the answer misses some inputs".to_owned())?;
        Ok(Embedded {
            vectors,
            truncated: 0,
        })
    }
}

/// The identity stored on points: the service, the model and the dimensions asked for.
pub fn identity(c: &EmbedderConfig) -> String {
    format!(
        "openai:{}:{}:{}",
        c.url.as_deref().unwrap_or("").trim_end_matches('/'),
        c.model.as_deref().unwrap_or(""),
        c.dimensions.map_or("default".to_owned(), |d| d.to_string())
    )
}

/// Statuses that refuse every input alike (credentials, rights, an unknown model or endpoint, a
/// proxy's login, a timeout): the service is out, not the input at fault.
fn outage(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 405 | 407 | 408 | 410)
}

/// An HTTP error's text without the URL's query or credentials.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

impl super::Embedder for OpenAiEmbedder {
    fn identity(&self) -> &str {
        OpenAiEmbedder::identity(self)
    }

    fn dimensions(&self) -> Option<usize> {
        OpenAiEmbedder::dimensions(self)
    }

    fn embed_batch(
        self: std::sync::Arc<Self>,
        texts: Vec<String>,
    ) -> futures_util::future::BoxFuture<'static, Result<Embedded, super::EmbedError>> {
        Box::pin(async move {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            self.embed(&refs).await
        })
    }
}
