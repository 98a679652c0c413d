//! Server settings: a JSON file (`--config` or `PRESENCE_CONFIG`), then environment
//! variables, then `--addr`. Without a file the development settings apply.
use serde::Deserialize;
use serde_json::{json, Value};

/// The engine's heartbeat timeout unless the `engine` section sets its own: without one,
/// a socket whose client died silently or froze would stay online for good.
pub const CONNECTION_TIMEOUT_MS: u64 = 30_000;

/// Everything the server reads at start. Unknown keys are refused so typos fail loudly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `HOST:PORT` to listen on (port 0 picks a free one).
    pub addr: String,
    /// HS256 secret that client tokens are signed with.
    pub jwt_secret: String,
    /// Secret a backend sends as `Authorization: Bearer ...` to the `/api` routes.
    pub api_secret: String,
    /// Serve `GET /dev/token`, which signs a token for any user id: development only.
    pub dev_tokens: bool,
    /// Origins a browser may connect from; empty allows any (and requests without `Origin`
    /// are always allowed: they come from programs, not pages).
    pub allowed_origins: Vec<String>,
    /// Largest client message, in bytes; larger ones close the socket with 1009.
    pub max_message_bytes: usize,
    /// Client messages allowed per second, sustained.
    pub messages_per_second: u32,
    /// Client messages allowed in a burst above the sustained rate.
    pub message_burst: u32,
    /// How often the server pings each socket; each pong (or message) is a heartbeat.
    pub ping_interval_ms: u64,
    /// How long a closing socket gets to take its last frames and the close frame.
    pub close_timeout_ms: u64,
    /// The engine's own configuration (its JSON keys).
    pub engine: Value,
    /// The engine's `cluster` section, passed to the engine as is: with it, several
    /// servers pointed at one Redis share presence.
    pub cluster: Option<Value>,
    /// Channels (engine channel JSON) created at start, such as a demo room.
    pub channels: Vec<Value>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "127.0.0.1:8080".into(),
            jwt_secret: String::new(),
            api_secret: String::new(),
            dev_tokens: false,
            allowed_origins: Vec::new(),
            max_message_bytes: 16 * 1024,
            messages_per_second: 20,
            message_burst: 40,
            ping_interval_ms: 10_000,
            close_timeout_ms: 5_000,
            engine: json!({"connection_timeout_ms": CONNECTION_TIMEOUT_MS}),
            cluster: None,
            channels: Vec::new(),
        }
    }
}

/// The settings `cargo run -p presence-server` starts with: well-known secrets, the token
/// endpoint on, and a demo channel for the web page.
pub fn development() -> ServerConfig {
    ServerConfig {
        jwt_secret: "dev-jwt-secret".into(),
        api_secret: "dev-api-secret".into(),
        dev_tokens: true,
        channels: vec![json!({
            "type": "demo", "id": "lobby", "name": "Lobby",
            "members": ["alice", "bob", "carol", "dave", "erin"]
        })],
        ..ServerConfig::default()
    }
}

/// Where the settings came from, for the start-up line.
#[derive(Debug)]
pub enum Source {
    Development,
    File(String),
}

impl ServerConfig {
    /// Parses a config file's text.
    pub fn from_json(text: &str) -> Result<ServerConfig, String> {
        serde_json::from_str(text).map_err(|e| format!("server config: {e}"))
    }

    /// Applies `PRESENCE_*` environment variables over the current values.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
            value.parse().map_err(|_| format!("{name}: cannot parse '{value}'"))
        }
        if let Some(v) = var("PRESENCE_ADDR") {
            self.addr = v;
        }
        if let Some(v) = var("PRESENCE_JWT_SECRET") {
            self.jwt_secret = v;
        }
        if let Some(v) = var("PRESENCE_API_SECRET") {
            self.api_secret = v;
        }
        if let Some(v) = var("PRESENCE_DEV_TOKENS") {
            self.dev_tokens = parse("PRESENCE_DEV_TOKENS", &v)?;
        }
        if let Some(v) = var("PRESENCE_ALLOWED_ORIGINS") {
            self.allowed_origins =
                v.split(',').map(str::trim).filter(|o| !o.is_empty()).map(String::from).collect();
        }
        if let Some(v) = var("PRESENCE_MAX_MESSAGE_BYTES") {
            self.max_message_bytes = parse("PRESENCE_MAX_MESSAGE_BYTES", &v)?;
        }
        if let Some(v) = var("PRESENCE_MESSAGES_PER_SECOND") {
            self.messages_per_second = parse("PRESENCE_MESSAGES_PER_SECOND", &v)?;
        }
        if let Some(v) = var("PRESENCE_ENGINE") {
            self.engine = serde_json::from_str(&v).map_err(|e| format!("PRESENCE_ENGINE: {e}"))?;
        }
        if let Some(v) = var("PRESENCE_CLUSTER") {
            self.cluster = Some(serde_json::from_str(&v).map_err(|e| format!("PRESENCE_CLUSTER: {e}"))?);
        }
        if let Some(v) = var("PRESENCE_NODE_ID") {
            match &mut self.cluster {
                Some(Value::Object(cluster)) => {
                    cluster.insert("node_id".into(), Value::String(v));
                }
                _ => return Err(
                    "PRESENCE_NODE_ID: set the cluster section (the file's cluster or PRESENCE_CLUSTER) too"
                        .into(),
                ),
            }
        }
        Ok(())
    }

    /// The engine's configuration with the heartbeat timeout and the `cluster` section in it.
    pub fn engine_config(&self) -> Result<Value, String> {
        let mut engine = self.engine.clone();
        let Value::Object(keys) = &mut engine else { return Err("engine: must be a JSON object".into()) };
        keys.entry("connection_timeout_ms").or_insert(json!(CONNECTION_TIMEOUT_MS));
        let Some(cluster) = &self.cluster else { return Ok(engine) };
        if keys.contains_key("cluster") {
            return Err("cluster: set it at the top level or in engine, not in both".into());
        }
        keys.insert("cluster".into(), cluster.clone());
        Ok(engine)
    }

    /// Refuses settings that would make the server unsafe or useless.
    pub fn validate(&self) -> Result<(), String> {
        if self.jwt_secret.len() < 8 {
            return Err("jwt_secret (PRESENCE_JWT_SECRET) must be at least 8 bytes".into());
        }
        if self.api_secret.len() < 8 {
            return Err("api_secret (PRESENCE_API_SECRET) must be at least 8 bytes".into());
        }
        if self.max_message_bytes < 64 {
            return Err("max_message_bytes must be at least 64".into());
        }
        if self.messages_per_second == 0 {
            return Err("messages_per_second must be > 0".into());
        }
        if self.ping_interval_ms == 0 {
            return Err("ping_interval_ms must be > 0".into());
        }
        let engine = self.engine_config()?;
        // A client's pong to a ping is its heartbeat: pings must come within the timeout.
        if let Some(timeout) = engine["connection_timeout_ms"].as_u64().filter(|&t| t > 0) {
            if self.ping_interval_ms >= timeout {
                return Err(format!(
                    "ping_interval_ms ({}) must be less than the engine's connection_timeout_ms ({timeout}), \
                     or healthy clients that have nothing to say time out",
                    self.ping_interval_ms
                ));
            }
        }
        Ok(())
    }
}

/// Reads settings from the command line (`--config PATH`, `--addr HOST:PORT`) and the
/// environment.
pub fn load(args: &[String], var: impl Fn(&str) -> Option<String>) -> Result<(ServerConfig, Source), String> {
    let mut config_path = var("PRESENCE_CONFIG");
    let mut addr = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => config_path = Some(it.next().ok_or("--config needs a path")?.clone()),
            "--addr" => addr = Some(it.next().ok_or("--addr needs HOST:PORT")?.clone()),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    let (mut config, source) = match config_path {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            (ServerConfig::from_json(&text)?, Source::File(path))
        }
        None => (development(), Source::Development),
    };
    config.apply_env(&var)?;
    if let Some(addr) = addr {
        config.addr = addr;
    }
    config.validate()?;
    Ok((config, source))
}

pub const USAGE: &str = "usage: presence-server [--config FILE.json] [--addr HOST:PORT]
Without a config file the development settings apply (well-known secrets, /dev/token on).
Environment: PRESENCE_CONFIG, PRESENCE_ADDR, PRESENCE_JWT_SECRET, PRESENCE_API_SECRET,
PRESENCE_DEV_TOKENS, PRESENCE_ALLOWED_ORIGINS, PRESENCE_MAX_MESSAGE_BYTES,
PRESENCE_MESSAGES_PER_SECOND, PRESENCE_ENGINE (engine config JSON), PRESENCE_CLUSTER
(the engine's cluster section as JSON), PRESENCE_NODE_ID (the cluster section's node_id).";

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn without_a_file_the_development_settings_apply_and_env_and_flags_override() {
        let (config, source) = load(&[], env(&[])).unwrap();
        assert!(matches!(source, Source::Development));
        assert_eq!((config.addr.as_str(), config.dev_tokens), ("127.0.0.1:8080", true));
        let vars = [
            ("PRESENCE_ADDR", "0.0.0.0:9000"),
            ("PRESENCE_ALLOWED_ORIGINS", "https://a.example, https://b.example"),
        ];
        let (config, _) = load(&[], env(&vars)).unwrap();
        assert_eq!(config.addr, "0.0.0.0:9000");
        assert_eq!(config.allowed_origins, ["https://a.example", "https://b.example"]);
        let args = ["--addr".to_string(), "127.0.0.1:0".to_string()];
        assert_eq!(load(&args, env(&vars)).unwrap().0.addr, "127.0.0.1:0");
    }

    #[test]
    fn the_cluster_section_reaches_the_engine_config_as_is() {
        let (config, _) = load(&[], env(&[])).unwrap();
        assert!(config.engine_config().unwrap().get("cluster").is_none(), "single-node by default");
        let cluster = r#"{"redis_url": "redis://127.0.0.1:6379/0", "node_id": "a", "lease_ms": 5000}"#;
        let (config, _) =
            load(&[], env(&[("PRESENCE_CLUSTER", cluster), ("PRESENCE_NODE_ID", "game-2")])).unwrap();
        let engine = config.engine_config().unwrap();
        assert_eq!(
            engine,
            json!({"connection_timeout_ms": 30_000, "cluster": {
                "redis_url": "redis://127.0.0.1:6379/0", "node_id": "game-2", "lease_ms": 5000}})
        );
        let err = load(&[], env(&[("PRESENCE_NODE_ID", "a")])).unwrap_err();
        assert!(err.contains("set the cluster section"), "{err}");
        assert!(load(&[], env(&[("PRESENCE_CLUSTER", "{")])).unwrap_err().starts_with("PRESENCE_CLUSTER:"));
        let both = [("PRESENCE_CLUSTER", cluster), ("PRESENCE_ENGINE", r#"{"cluster": {}}"#)];
        assert!(load(&[], env(&both)).unwrap_err().contains("not in both"));
    }

    #[test]
    fn an_engine_section_keeps_the_heartbeat_timeout_unless_it_sets_one() {
        let engine_timeout = |vars: &[(&str, &str)]| {
            let (config, _) = load(&[], env(vars)).unwrap();
            crate::App::new(config).unwrap().engine.config().connection_timeout_ms
        };
        assert_eq!(engine_timeout(&[]), 30_000);
        // A section naming other keys: dead and silent sockets are still closed.
        assert_eq!(engine_timeout(&[("PRESENCE_ENGINE", r#"{"max_connections_per_user": 2}"#)]), 30_000);
        assert_eq!(engine_timeout(&[("PRESENCE_ENGINE", r#"{"connection_timeout_ms": 0}"#)]), 0);
        // Pings must come often enough for a healthy client's pongs to beat the timeout.
        let err = load(&[], env(&[("PRESENCE_ENGINE", r#"{"connection_timeout_ms": 5000}"#)])).unwrap_err();
        assert!(err.contains("ping_interval_ms (10000) must be less than"), "{err}");
    }

    #[test]
    fn a_file_must_name_its_secrets_and_only_known_keys() {
        let dir = std::env::temp_dir().join(format!("presence-server-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.json");
        let args = ["--config".to_string(), path.display().to_string()];
        std::fs::write(&path, r#"{"addr": "127.0.0.1:0"}"#).unwrap();
        assert!(load(&args, env(&[])).unwrap_err().contains("jwt_secret"));
        std::fs::write(
            &path,
            r#"{"jwt_secret": "0123456789", "api_secret": "0123456789", "max_mesage_bytes": 1}"#,
        )
        .unwrap();
        assert!(load(&args, env(&[])).unwrap_err().contains("unknown field `max_mesage_bytes`"));
        std::fs::write(&path, r#"{"jwt_secret": "0123456789", "api_secret": "0123456789"}"#).unwrap();
        let (config, _) = load(&args, env(&[("PRESENCE_MESSAGES_PER_SECOND", "5")])).unwrap();
        assert_eq!((config.dev_tokens, config.messages_per_second), (false, 5));
        assert!(load(&args, env(&[("PRESENCE_DEV_TOKENS", "yes")]))
            .unwrap_err()
            .contains("PRESENCE_DEV_TOKENS"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
