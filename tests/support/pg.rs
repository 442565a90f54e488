//! A real PostgreSQL server for a test: `initdb` into a temporary directory, a free loopback
//! port, the unix socket in the same directory, stopped by the postmaster's PID on drop.
//!
//! As root the cluster belongs to the `postgres` account (`runuser -u postgres`; the server
//! refuses to run as root), otherwise to the current user. When no server binaries are
//! installed (`/usr/lib/postgresql/*/bin/initdb`), the test FAILS — unless `PERSODESK_SKIP_PG=1`
//! is set explicitly, then [`PgServer::start`] returns `None` and the test says it skipped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    child: Child,
    bin: PathBuf,
    as_postgres: bool,
}

/// The newest installed server's bin directory.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `program args` as the cluster's owner.
fn command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    let path = bin.join(program);
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

impl PgServer {
    /// Starts a fresh server, or `None` when the binaries are missing and `PERSODESK_SKIP_PG=1`.
    pub fn start() -> Option<PgServer> {
        let Some(bin) = bin_dir() else {
            if std::env::var("PERSODESK_SKIP_PG").as_deref() == Ok("1") {
                eprintln!("SKIPPED: no PostgreSQL server binaries and PERSODESK_SKIP_PG=1");
                return None;
            }
            panic!(
                "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): run .ci/setup, or set PERSODESK_SKIP_PG=1 to skip explicitly"
            );
        };
        let as_postgres = is_root();
        // As root the server runs as `postgres`, which must reach the directory: /tmp, not a
        // $TMPDIR that may be private to root.
        let base = if as_postgres {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "persodesk-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        if as_postgres {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("a postgres account (the Debian package creates it)");
            nix::unistd::chown(&dir, Some(user.uid), Some(user.gid)).expect("chown temp dir");
        }
        let data = dir.join("data");
        let status = command(&bin, "initdb", as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(status.success(), "initdb failed");
        for _ in 0..5 {
            let port = free_port();
            let child = command(&bin, "postgres", as_postgres)
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(&dir)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=100",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("postgres starts");
            let mut server = PgServer {
                dir: dir.clone(),
                port,
                child,
                bin: bin.clone(),
                as_postgres,
            };
            if server.wait_ready() {
                server.watch_this_process();
                return Some(server);
            }
            server.stop();
        }
        panic!("the PostgreSQL server did not start");
    }

    /// Stops the server (by its PID file) and removes its directory once this test process has
    /// exited, for a server nothing drops (one kept in a `static` for the whole binary). A
    /// detached `sh` polls `/proc/<pid>`; after a normal drop it finds no PID file and only
    /// removes what is left.
    fn watch_this_process(&self) {
        let script = r#"while [ -d "/proc/$1" ]; do sleep 1; done
pid=$(head -n 1 "$2/data/postmaster.pid" 2>/dev/null) && kill -INT "$pid" 2>/dev/null
i=0; while [ -e "$2/data/postmaster.pid" ] && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done
rm -rf -- "$2""#;
        let spawned = Command::new("sh")
            .args(["-c", script, "pg-watchdog"])
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            eprintln!(
                "no watchdog for the PostgreSQL server in {}: {e}",
                self.dir.display()
            );
        }
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if postgres::Client::connect(&self.url("postgres"), postgres::NoTls).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_db(&self, name: &str) -> String {
        let mut c = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connect to the server");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        self.url(name)
    }

    /// A superuser connection to `db` (to tamper, as an attacker with the database would).
    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(db), postgres::NoTls).expect("connect")
    }

    /// `pg_dump` of database `db`, as text.
    pub fn dump(&self, db: &str) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .arg(self.url(db))
            .output()
            .expect("pg_dump runs");
        assert!(out.status.success(), "pg_dump failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The postmaster's PID (first line of postmaster.pid).
    fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    fn stop(&mut self) {
        if let Some(pid) = self.postmaster_pid() {
            // Fast shutdown of the server itself, by PID.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
