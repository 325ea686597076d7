//! A 3-node Qdrant cluster on loopback for the bench's direct-path-into-a-cluster phase: the
//! binary `scripts/services.sh` installed (`PG2QDRANT_TEST_QDRANT_BIN`), each node with its own
//! storage under `dir`, the first bootstrapping the others. Killed when dropped.

use std::time::{Duration, Instant};

pub struct Cluster {
    nodes: Vec<std::process::Child>,
    /// Node 0's gRPC and REST addresses (clients talk to it).
    pub grpc: String,
    pub http: String,
}

use crate::docs::free_port;

/// A plain `GET` of `path` on the REST port: the body, when it answered 200.
fn get(http: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = http.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).ok()?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok()?;
    reply.starts_with("HTTP/1.1 200").then(|| {
        reply
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    })
}

impl Cluster {
    pub fn start(bin: &str, dir: &std::path::Path, n: usize) -> Self {
        let first_p2p = free_port();
        let mut nodes = Vec::new();
        let mut first = (String::new(), String::new());
        for i in 0..n {
            let (http, grpc, p2p) = (
                free_port(),
                free_port(),
                if i == 0 { first_p2p } else { free_port() },
            );
            let storage = dir.join(format!("qdrant-{i}"));
            let _ = std::fs::remove_dir_all(&storage);
            std::fs::create_dir_all(&storage).unwrap();
            let log = std::fs::File::create(storage.join("qdrant.log")).unwrap();
            let mut command = std::process::Command::new(bin);
            command.args(["--uri", &format!("http://127.0.0.1:{p2p}")]);
            if i > 0 {
                command.args(["--bootstrap", &format!("http://127.0.0.1:{first_p2p}")]);
            }
            let child = command
                .arg("--disable-telemetry")
                .current_dir(&storage)
                .env("QDRANT__CLUSTER__ENABLED", "true")
                .env("QDRANT__CLUSTER__P2P__PORT", p2p.to_string())
                .env("QDRANT__SERVICE__HOST", "127.0.0.1")
                .env("QDRANT__SERVICE__HTTP_PORT", http.to_string())
                .env("QDRANT__SERVICE__GRPC_PORT", grpc.to_string())
                .env("QDRANT__STORAGE__STORAGE_PATH", storage.join("storage"))
                .env("QDRANT__STORAGE__SNAPSHOTS_PATH", storage.join("snapshots"))
                .env("QDRANT__LOG_LEVEL", "WARN")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start a Qdrant node");
            nodes.push(child);
            let http = format!("http://127.0.0.1:{http}");
            wait("a Qdrant node healthy", || get(&http, "/healthz").is_some());
            if i == 0 {
                first = (format!("http://127.0.0.1:{grpc}"), http);
            }
        }
        let cluster = Self {
            nodes,
            grpc: first.0,
            http: first.1,
        };
        wait("every Qdrant node a peer", || {
            get(&cluster.http, "/cluster")
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                .and_then(|v| v["result"]["peers"].as_object().map(|p| p.len()))
                == Some(n)
        });
        cluster
    }

    /// The nodes' pids, comma-separated (what `cpu::start` sums).
    pub fn pids(&self) -> String {
        self.nodes
            .iter()
            .map(|c| c.id().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
