//! A real Garage cluster (S3-compatible object storage) in a temporary folder: the server the
//! S3 repository tests talk to, so that they meet real signatures, real errors and real
//! node failures rather than a mock. `scripts/test-env.sh` installs the `garage` binary.
//!
//! Every node listens on free loopback ports only. With N nodes the replication factor is
//! N, so a cluster of three keeps answering with one node killed (two copies make a
//! quorum), and a test can prove that a repository rides that out.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to start, join and report the cluster usable: generous, as the
/// tests share two cores with compilers.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The S3 region the nodes are configured with; requests must be signed for it.
const REGION: &str = "garage";

/// The environment the `garage` command reads settings from: a developer's own must not
/// point the fixture's commands at another cluster.
const GARAGE_ENV: [&str; 9] = [
    "GARAGE_RPC_HOST",
    "GARAGE_CONFIG_FILE",
    "GARAGE_RPC_SECRET",
    "GARAGE_RPC_SECRET_FILE",
    "GARAGE_ADMIN_TOKEN",
    "GARAGE_ADMIN_TOKEN_FILE",
    "GARAGE_METRICS_TOKEN",
    "GARAGE_METRICS_TOKEN_FILE",
    "GARAGE_ALLOW_WORLD_READABLE_SECRETS",
];

/// A running Garage cluster with one bucket and one access key allowed to read, write and
/// own it. Dropping it kills every node and removes its folder.
pub struct Garage {
    nodes: Vec<Node>,
    bucket: String,
    key_id: String,
    secret: String,
    // Last: the nodes are killed before their folders go.
    dir: tempfile::TempDir,
}

/// One `garage server` process and what it was started with.
struct Node {
    config: PathBuf,
    log: PathBuf,
    s3_port: u16,
    admin_port: u16,
    /// `<hex id>@127.0.0.1:<rpc port>`, as `garage node connect` takes it.
    address: String,
    child: Option<Child>,
}

impl Garage {
    /// Starts `nodes` nodes (1 or more) with replication factor `nodes`, joins them into one
    /// zone with 1 GB each, applies the layout, waits until every node reports the cluster
    /// fully operational, then creates the bucket `holdfast-test` and a key for it. Panics
    /// with the node's log when anything does not come up in time.
    pub fn start(nodes: usize) -> Garage {
        assert!(nodes >= 1, "a Garage cluster needs at least one node");
        let dir = tempfile::Builder::new()
            .prefix("holdfast-garage-")
            .tempdir()
            .unwrap();
        let secret = random_hex(32);
        let ports = super::free_ports(nodes * 3);
        let mut cluster = Garage {
            nodes: Vec::new(),
            bucket: "holdfast-test".to_string(),
            key_id: String::new(),
            secret: String::new(),
            dir,
        };
        for i in 0..nodes {
            let [rpc, s3, admin] = [ports[i * 3], ports[i * 3 + 1], ports[i * 3 + 2]];
            let root = cluster.dir.path().join(format!("node{i}"));
            fs::create_dir(&root).unwrap();
            let config = root.join("garage.toml");
            fs::write(
                &config,
                format!(
                    r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = {nodes}

rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"
# A killed node's peers learn it is gone at their next ping (up to 15 s); until then a
# request may wait on its dead connection this long before Garage asks another node.
rpc_timeout_msec = 5000

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                    root = root.display()
                ),
            )
            .unwrap();
            cluster.nodes.push(Node {
                config,
                log: root.join("garage.log"),
                s3_port: s3,
                admin_port: admin,
                address: String::new(),
                child: None,
            });
            cluster.spawn(i);
        }
        for i in 0..nodes {
            // The node writes its key at start; the RPC server answers a little later.
            let id = cluster.retry(i, &["node", "id", "-q"]);
            cluster.nodes[i].address = id.trim().to_string();
            cluster.retry(i, &["status"]);
        }
        let ids: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| n.address.split('@').next().unwrap().to_string())
            .collect();
        for i in 1..nodes {
            let address = cluster.nodes[i].address.clone();
            cluster.garage(0, &["node", "connect", &address]);
        }
        let mut assign = vec!["layout", "assign", "-z", "dc1", "-c", "1G"];
        assign.extend(ids.iter().map(String::as_str));
        cluster.garage(0, &assign);
        cluster.garage(0, &["layout", "apply", "--version", "1"]);
        for i in 0..nodes {
            cluster.wait_health(i, true);
        }

        let key: serde_json::Value = serde_json::from_str(&cluster.garage(
            0,
            &["json-api", "CreateKey", r#"{"name": "holdfast-test"}"#],
        ))
        .expect("garage json-api CreateKey prints JSON");
        cluster.key_id = key["accessKeyId"]
            .as_str()
            .unwrap_or_else(|| panic!("no accessKeyId in CreateKey's answer: {key}"))
            .to_string();
        cluster.secret = key["secretAccessKey"]
            .as_str()
            .unwrap_or_else(|| panic!("no secretAccessKey in CreateKey's answer: {key}"))
            .to_string();
        let bucket = cluster.bucket.clone();
        cluster.create_bucket(&bucket);
        cluster
    }

    /// A Repository spec `name` on this bucket below `prefix`: the key id from
    /// `HOLDFAST_TEST_S3_KEY`, the secret from the file `secret` (as a spec names it,
    /// relative to the specs folder or absolute). Lines of `spec:` may follow it.
    pub fn repository_spec(&self, name: &str, prefix: &str, secret: &str) -> String {
        self.repository_spec_at(&self.endpoint(), name, prefix, secret)
    }

    /// As [`Garage::repository_spec`], through `endpoint` (one node of several).
    pub fn repository_spec_at(
        &self,
        endpoint: &str,
        name: &str,
        prefix: &str,
        secret: &str,
    ) -> String {
        format!(
            "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {{name: {name}}}
spec:
  storage:
    s3:
      endpoint: {endpoint}
      region: {region}
      bucket: {bucket}
      prefix: {prefix}
      accessKeyId: {{fromEnv: HOLDFAST_TEST_S3_KEY}}
      secretAccessKey: {{fromFile: {secret}}}
",
            region = self.region(),
            bucket = self.bucket(),
        )
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint of node 0.
    pub fn endpoint(&self) -> String {
        self.endpoints().swap_remove(0)
    }

    /// The S3 endpoint of every node, in node order; any of them serves the whole cluster.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.s3_port))
            .collect()
    }

    /// The region requests are signed for: `garage`.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The bucket made at start, `holdfast-test`.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The access key id (`GK…`) allowed to read, write and own every bucket of the fixture.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The secret of [`Self::key_id`].
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The temporary folder of the cluster (a `nodeN` folder per node, with its
    /// `garage.toml` and `garage.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates another bucket (S3 naming rules: 3 to 63 of `a-z`, `0-9`, `-`, `.`) that the
    /// fixture's key may read, write and own.
    /// The bucket's listing (ListObjectsV2) below `prefix`, as the XML S3 answers; read
    /// with curl's own signing, so not through the code under test.
    pub fn listing(&self, prefix: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--aws-sigv4"])
            .arg(format!("aws:amz:{}:s3", self.region()))
            .arg("--user")
            .arg(format!("{}:{}", self.key_id(), self.secret()))
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .arg(format!(
                "{}/{}?list-type=2&prefix={}",
                self.endpoint(),
                self.bucket(),
                prefix.replace('/', "%2F")
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "listing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn create_bucket(&self, name: &str) {
        let node = self.running_node();
        self.garage(node, &["bucket", "create", name]);
        self.garage(
            node,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                name,
                "--key",
                &self.key_id,
            ],
        );
    }

    /// Kills node `i` with SIGKILL, as a crash or a pulled plug would, and reaps it. Nothing
    /// is waited for: the others notice it gone at their next ping (up to 15 s), and until
    /// then a request they send it waits out the RPC timeout (5 s) before they ask another
    /// node, so the first requests after a kill may take that long.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its folder and ports (after [`Self::kill_node`]) and waits
    /// until it serves again: until it sees every node up when all run (degraded otherwise),
    /// and every running node answers. The others connect back to it at their own pace (up
    /// to 30 s); until then they leave it out of their quorums, which still succeed.
    pub fn restart_node(&mut self, i: usize) {
        assert!(
            self.nodes[i].child.is_none(),
            "node {i} is running; kill it first"
        );
        self.spawn(i);
        let all_running = self.nodes.iter().all(|n| n.child.is_some());
        self.wait_health(i, all_running);
        for n in 0..self.nodes.len() {
            if n != i && self.nodes[n].child.is_some() {
                self.wait_health(n, false);
            }
        }
    }

    /// Whether node `i` runs (not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// `garage -c <node i's config> <args>`, asserting success; returns stdout.
    pub fn garage(&self, i: usize, args: &[&str]) -> String {
        let out = self.command(i, args);
        assert!(
            out.status.success(),
            "garage {args:?} on node {i} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(i)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn command(&self, i: usize, args: &[&str]) -> Output {
        let mut cmd = Command::new(garage_binary());
        cmd.arg("-c").arg(&self.nodes[i].config).args(args);
        for var in GARAGE_ENV {
            cmd.env_remove(var);
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
    }

    /// Runs a command on node `i` until it succeeds (the node is still starting); returns
    /// its stdout.
    fn retry(&mut self, i: usize, args: &[&str]) -> String {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            self.assert_alive(i);
            let out = self.command(i, args);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "Garage node {i} did not answer `garage {args:?}` within {READY_WITHIN:?}: {}{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_tail(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `i`'s `/health` answers 200, and says "fully operational" (every
    /// storage node up in its view) when `fully`; "operational" (degraded) is enough otherwise.
    fn wait_health(&mut self, i: usize, fully: bool) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            self.assert_alive(i);
            let answer = http_get(self.nodes[i].admin_port, "/health");
            let ready = answer.as_deref().is_some_and(|a| {
                a.starts_with("HTTP/1.1 200") && (!fully || a.contains("fully operational"))
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Garage node {i} did not report the cluster {} within {READY_WITHIN:?}; \
                 last /health answer: {answer:?}{}",
                if fully {
                    "fully operational"
                } else {
                    "operational"
                },
                self.log_tail(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let mut cmd = Command::new(garage_binary());
        cmd.arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for var in GARAGE_ENV {
            cmd.env_remove(var);
        }
        node.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}")),
        );
    }

    /// Panics with the log when node `i`'s process has ended on its own.
    fn assert_alive(&mut self, i: usize) {
        let exited = self.nodes[i]
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            panic!(
                "Garage node {i} exited ({status}) while starting{}",
                self.log_tail(i)
            );
        }
    }

    fn running_node(&self) -> usize {
        (0..self.nodes.len())
            .find(|&i| self.is_running(i))
            .expect("every Garage node is killed")
    }

    /// The end of node `i`'s log, for panic messages.
    fn log_tail(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let text = fs::read_to_string(&node.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&s| text.is_char_boundary(s))
            .unwrap_or(text.len());
        format!(
            "\n--- end of {} ---\n{}",
            node.log.display(),
            &text[start..]
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}

/// The `garage` binary: on `PATH`, or where `cargo install` puts it (`~/.cargo/bin`, often
/// missing from a root shell's `PATH`).
pub fn garage_binary() -> PathBuf {
    find_binary("garage").unwrap_or_else(|| {
        panic!(
            "no `garage` on PATH nor in ~/.cargo/bin. Run `scripts/test-env.sh` (as `make test` \
             does) to build it, or set HOLDFAST_SKIP_DOCKER=1 to report the tests that need \
             outside servers as ignored."
        )
    })
}

/// A program on `PATH` or in `~/.cargo/bin`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    std::env::split_paths(&path)
        .chain(home)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `len` random bytes as hex.
fn random_hex(len: usize) -> String {
    let mut bytes = vec![0; len];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap();
    hex::encode(bytes)
}

/// A plain HTTP GET on a loopback port: the status line, headers and body, or None when
/// nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}
