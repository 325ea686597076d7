//! Private Apache Kafka brokers for the tests that stop one: a single node, or a 3-node cluster
//! (each node broker and controller, replication factor 3, `min.insync.replicas` 2), started
//! by `scripts/kafka/broker.sh` (`PG2QDRANT_TEST_KAFKA_BIN`) with data under the test's work dir.

use super::{env, free_port, work_dir, WAIT};
use std::path::PathBuf;

struct Node {
    dir: PathBuf,
    id: usize,
    port: u16,
    controller: u16,
    child: Option<std::process::Child>,
}

pub struct PrivateKafka {
    nodes: Vec<Node>,
    voters: String,
    /// Properties every node gets on top of the launcher's (SASL/TLS listeners); `{node}`,
    /// `{port}` and `{controller}` stand for the node's id and ports.
    extra: Vec<String>,
    /// SCRAM credentials created when the nodes' storage is formatted.
    scram: Option<String>,
}

impl PrivateKafka {
    /// One node.
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, 1, Vec::new(), None).await
    }

    /// `n` nodes in one cluster.
    pub async fn start_cluster(name: &str, n: usize) -> Self {
        Self::start_with(name, n, Vec::new(), None).await
    }

    /// `n` nodes with extra properties, and SCRAM credentials formatted in.
    pub async fn start_with(
        name: &str,
        n: usize,
        extra: Vec<String>,
        scram: Option<String>,
    ) -> Self {
        let nodes: Vec<Node> = (1..=n)
            .map(|id| Node {
                dir: work_dir(name).join(format!("kafka-{id}")),
                id,
                port: free_port(),
                controller: free_port(),
                child: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        let mut k = Self {
            nodes,
            voters,
            extra,
            scram,
        };
        k.restart().await;
        k.wait_registered().await;
        k
    }

    /// Until the metadata lists every node: a listening node may not have registered with the
    /// controller yet, and a topic of replication factor 3 cannot be created before it has.
    async fn wait_registered(&self) {
        let (brokers, n) = (self.brokers(), self.nodes.len());
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let bootstrap = brokers.clone();
            let registered = tokio::task::spawn_blocking(move || {
                use rdkafka::consumer::{BaseConsumer, Consumer};
                let c: BaseConsumer = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .create()
                    .ok()?;
                let md = c
                    .fetch_metadata(None, std::time::Duration::from_secs(5))
                    .ok()?;
                Some(md.brokers().len())
            })
            .await
            .ok()
            .flatten();
            if registered == Some(n) {
                return;
            }
            if std::time::Instant::now() > deadline {
                let logs: Vec<String> = (0..n)
                    .map(|i| format!("node {}:\n{}", self.nodes[i].id, self.log_tail(i)))
                    .collect();
                panic!(
                    "timed out waiting for {n} Kafka nodes registered at {brokers} (metadata lists {registered:?}); their logs end:\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The last lines of node `i`'s log.
    fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.nodes[i].dir.join("kafka.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The bootstrap list of every node.
    pub fn brokers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Port `i`'s node listens on (the `PLAINTEXT` listener).
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    fn spawn(&mut self, i: usize) {
        let node = &self.nodes[i];
        std::fs::create_dir_all(&node.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("kafka.log"))
            .unwrap();
        let mut command = std::process::Command::new(env("PG2QDRANT_TEST_KAFKA_BIN"));
        command
            .arg(&node.dir)
            .arg(node.id.to_string())
            .arg(node.port.to_string())
            .arg(node.controller.to_string())
            .arg(&self.voters)
            .args(self.extra.iter().map(|p| {
                p.replace("{node}", &node.id.to_string())
                    .replace("{port}", &node.port.to_string())
                    .replace("{controller}", &node.controller.to_string())
            }));
        if let Some(scram) = &self.scram {
            command.env("KAFKA_SCRAM", scram);
        }
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i].child = Some(child);
    }

    async fn wait_listening(&mut self, i: usize) {
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.nodes[i].port)).is_err() {
            let exited = self.nodes[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || std::time::Instant::now() > deadline {
                let (id, port) = (self.nodes[i].id, self.nodes[i].port);
                panic!(
                    "Kafka node {id} not listening on {port} ({exited:?}); its log ends:\n{}",
                    self.log_tail(i)
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL of node `i` (its data stays).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Node `i` started again on its data and ports.
    pub async fn restart_node(&mut self, i: usize) {
        self.spawn(i);
        self.wait_listening(i).await;
    }

    /// SIGKILL of every node.
    pub fn kill(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }

    /// Every node started (again), all spawned before any is waited for: a cluster's nodes wait
    /// for each other's controllers.
    pub async fn restart(&mut self) {
        for i in 0..self.nodes.len() {
            self.spawn(i);
        }
        for i in 0..self.nodes.len() {
            self.wait_listening(i).await;
        }
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        self.kill();
    }
}
