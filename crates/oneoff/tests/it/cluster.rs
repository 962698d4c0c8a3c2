//! Several real `oneoff serve` replicas on one real PostgreSQL database, behind a real nginx
//! that balances them round-robin (no sticky sessions), so consecutive requests of one client
//! land on different replicas. Each replica keeps its port across restarts, as a pod behind a
//! Service keeps its address, so a rolling restart is `stop_replica` then `start_replica`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::proxy::{free_port, nginx_with, Nginx};
use crate::support::{cli_command, sqlite_config_text, write_config, TestServer};

/// One replica: its name, its fixed port, and its process while it runs.
pub struct Replica {
    pub name: String,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

impl Replica {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the replica on its port and waits until it serves.
    fn start(&mut self) {
        assert!(self.process.is_none(), "replica {} is already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut child = cli_command(&["serve", "--config", self.config.to_str().unwrap()])
            .env("ONEOFF_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start oneoff serve");
        let mut announced = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        stdout.read_line(&mut announced).expect("read the replica's first line");
        assert!(announced.starts_with("oneoff listening on"), "replica {} did not start:\n{}", self.name, self.log());
        // Keep reading what it prints, so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        self.process = Some(child);
    }

    /// What the replica wrote to its log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `count` replicas named `a`, `b`, `c`… on one fresh PostgreSQL database, and nginx in front.
pub struct Cluster {
    pub replicas: Vec<Replica>,
    nginx: Nginx,
    /// Requests through nginx, with the helpers of a single server.
    pub api: TestServer,
}

impl Cluster {
    /// `server_extra` adds keys to every replica's `[server]` table.
    pub async fn start(count: usize, jobs: &str, server_extra: &str) -> Cluster {
        let database = oneoff_testpg::Postgres::shared().new_database();
        let dir = tempfile::tempdir().unwrap();
        let mut replicas = Vec::new();
        for index in 0..count {
            let name = ((b'a' + index as u8) as char).to_string();
            let port = free_port();
            let home = dir.path().join(&name);
            std::fs::create_dir_all(&home).unwrap();
            let extra =
                format!("database = {database:?}\nreplica = {name:?}\nlisten = \"127.0.0.1:{port}\"\n{server_extra}");
            // `sqlite_config_text` puts its own `listen` first; this replica's later one is its port.
            let text = sqlite_config_text(&home.join("data"), "", jobs).replacen("listen = \"127.0.0.1:0\"\n", "", 1);
            let text = text.replacen("[server]\n", &format!("[server]\n{extra}\n"), 1);
            let config = write_config(&home, &text);
            replicas.push(Replica { name, port, config, log: home.join("server.log"), process: None });
        }
        let upstreams: String = replicas
            .iter()
            .map(|replica| format!("server 127.0.0.1:{} max_fails=1 fail_timeout=1s;\n", replica.port))
            .collect();
        for replica in &mut replicas {
            replica.start();
        }
        // After the replicas: nginx's own first request must not find them all down.
        let nginx = balancer(&upstreams).await;
        let mut api = TestServer::remote(String::new(), dir);
        api.url = nginx.url.clone();
        Cluster { replicas, nginx, api }
    }

    /// Starts replica `index` (again) on its port and waits until it serves.
    pub async fn start_replica(&mut self, index: usize) {
        self.replicas[index].start();
    }

    /// SIGTERM, as a rolling deploy sends it; waits until the replica has exited.
    pub async fn stop_replica(&mut self, index: usize) {
        let replica = &mut self.replicas[index];
        let mut child = replica.process.take().expect("the replica runs");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "replica {} stopped with {status}:\n{}", replica.name, replica.log());
    }

    /// The balancer's URL: what clients use.
    pub fn url(&self) -> &str {
        &self.nginx.url
    }

    /// A server handle that talks to replica `index` directly, bypassing nginx.
    pub fn direct(&self, index: usize) -> TestServer {
        let mut api = TestServer::remote(String::new(), tempfile::tempdir().unwrap());
        api.url = self.replicas[index].url();
        api
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for replica in &mut self.replicas {
            if let Some(mut child) = replica.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// nginx balancing `upstreams` round-robin, with what live logs need (docs/deployment.md):
/// upgrades forwarded, no buffering, long reads; a replica that refuses connections is
/// skipped for the next one.
async fn balancer(upstreams: &str) -> Nginx {
    const LOCATION: &str = "location / {
            proxy_pass http://oneoff;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 2s;
        }";
    nginx_with(LOCATION, &format!("upstream oneoff {{\n{upstreams}}}")).await
}

/// How long cluster tests wait for what must happen (a heartbeat, a claim, a detection).
pub const WAIT: Duration = Duration::from_secs(30);
