//! Third-party servers, declared once: the `[[server]]` tables of `xtask/experiments.toml` say
//! how each is started (a foreground command), where the load goes and with which protocol (a
//! target as `netpoll load` takes it), which Debian package provides it, and what to build
//! first. Their configuration files live beside, in `xtask/servers/`. The experiment suite and
//! the tests start them the same way: [`prepare`] renders the files into a directory of each
//! server's own, with a free loopback port, and runs the builds.

use std::{
    fs,
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use serde::{Deserialize, Serialize};

/// One `[[server]]` of the declaration. In `command`, `connect` and `build`, and in every
/// configuration file, `{dir}` is the server's rendered directory and `{port}` its port.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub name: String,
    /// What it is, for reports.
    pub description: String,
    /// The Debian package that provides it (installed when an experiment runs it).
    pub package: String,
    /// The shell command that starts it in the foreground.
    pub command: String,
    /// Where the load goes: `127.0.0.1:{port}` (echo), or an `http://`, `redis://` or
    /// `memcached://` URL.
    pub connect: String,
    /// A shell command run once before the server is first started (e.g. `go build`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// What its I/O-model verdict says (a part of the verdict's name): the tests and the
    /// suite's check hold netpoll to it.
    pub verdict: String,
}

/// The `[[server]]` tables of a declaration file (other tables are left to their readers).
pub fn declared(path: &Path) -> Result<Vec<Server>, String> {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        server: Vec<Server>,
    }
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let only: Only = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    check(&only.server).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(only.server)
}

/// Names unique and not those of models; every field that must say where to listen does.
pub fn check(servers: &[Server]) -> Result<(), String> {
    for (i, s) in servers.iter().enumerate() {
        if servers[..i].iter().any(|o| o.name == s.name) {
            return Err(format!("server {} is declared twice", s.name));
        }
        if crate::models::model(&s.name).is_some() || crate::models::variant(&s.name).is_some() {
            return Err(format!("server {}: that is a model's name", s.name));
        }
        if !s.connect.contains("{port}") {
            return Err(format!(
                "server {}: connect must use {{port}} (each run picks a free port)",
                s.name
            ));
        }
    }
    Ok(())
}

/// A server ready to start: placeholders filled, files rendered, built.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    pub name: String,
    pub command: String,
    /// The load generator's target.
    pub target: String,
    pub dir: PathBuf,
}

/// Rendered servers; their directories are removed when this is dropped.
#[derive(Debug)]
pub struct Prepared {
    root: PathBuf,
    pub servers: Vec<Ready>,
}

impl Prepared {
    pub fn get(&self, name: &str) -> Option<&Ready> {
        self.servers.iter().find(|s| s.name == name)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Renders the configuration files of `config_dir` for each server into a directory of its own
/// under `root` (created world-readable: some servers read their files as an unprivileged user),
/// with a free loopback port, and runs its build.
pub fn prepare(config_dir: &Path, root: &Path, servers: &[&Server]) -> Result<Prepared, String> {
    // Made first, so that a failure below removes what was rendered.
    let mut prepared = Prepared {
        root: root.to_path_buf(),
        servers: Vec::new(),
    };
    for s in servers {
        let dir = root.join(&s.name);
        let port = free_port()?;
        let fill = |text: &str| {
            text.replace("{dir}", &dir.display().to_string())
                .replace("{port}", &port.to_string())
        };
        render(config_dir, &dir, &fill)
            .map_err(|e| format!("server {}: rendering its files: {e}", s.name))?;
        if let Some(build) = &s.build {
            let out = Command::new("sh")
                .args(["-c", &fill(build)])
                .current_dir(&dir)
                .output()
                .map_err(|e| format!("server {}: cannot run its build: {e}", s.name))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                return Err(format!(
                    "server {}: its build failed ({}): {}",
                    s.name,
                    out.status,
                    err.lines().next().unwrap_or_default()
                ));
            }
        }
        prepared.servers.push(Ready {
            name: s.name.clone(),
            command: fill(&s.command),
            target: fill(&s.connect),
            dir,
        });
    }
    Ok(prepared)
}

/// Copies `from` into `to` recursively, each file's text filled in.
fn render(from: &Path, to: &Path, fill: &dyn Fn(&str) -> String) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            render(&entry.path(), &target, fill)?;
        } else {
            fs::write(&target, fill(&fs::read_to_string(entry.path())?))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// A loopback port nothing listens on now.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str) -> Server {
        Server {
            name: name.into(),
            description: "d".into(),
            package: "p".into(),
            command: "serve {dir} {port}".into(),
            connect: "http://127.0.0.1:{port}/".into(),
            build: Some("echo built > {dir}/built".into()),
            verdict: "epoll".into(),
        }
    }

    #[test]
    fn servers_are_rendered_with_their_own_port_and_built() {
        let tmp = std::env::temp_dir().join(format!("netpoll-servers-test-{}", std::process::id()));
        let config = tmp.join("config");
        fs::create_dir_all(config.join("www")).unwrap();
        fs::write(config.join("a.conf"), "listen {port}; root {dir}/www;").unwrap();
        fs::write(config.join("www/index.html"), "hi").unwrap();
        let (a, b) = (server("a"), server("b"));
        let root = tmp.join("rendered");
        let prepared = prepare(&config, &root, &[&a, &b]).expect("prepared");
        let ra = prepared.get("a").unwrap();
        let port = ra
            .target
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches('/');
        assert_eq!(ra.command, format!("serve {} {port}", ra.dir.display()));
        assert_eq!(
            fs::read_to_string(ra.dir.join("a.conf")).unwrap(),
            format!("listen {port}; root {}/www;", ra.dir.display())
        );
        assert_eq!(
            fs::read_to_string(ra.dir.join("www/index.html")).unwrap(),
            "hi"
        );
        assert_eq!(fs::read_to_string(ra.dir.join("built")).unwrap(), "built\n");
        assert_ne!(prepared.get("b").unwrap().dir, ra.dir);
        drop(prepared);
        assert!(!root.exists());
        let mut failing = server("c");
        failing.build = Some("echo no >&2; exit 3".into());
        let err = prepare(&config, &root, &[&failing]).unwrap_err();
        assert!(err.contains("build failed") && err.contains("no"), "{err}");
        let _ = fs::remove_dir_all(&tmp);
    }

    #[test]
    fn bad_declarations_are_refused() {
        assert!(
            check(&[server("a"), server("a")])
                .unwrap_err()
                .contains("twice")
        );
        assert!(check(&[server("poll")]).unwrap_err().contains("model"));
        let mut fixed = server("a");
        fixed.connect = "127.0.0.1:80".into();
        assert!(check(&[fixed]).unwrap_err().contains("{port}"));
    }
}
