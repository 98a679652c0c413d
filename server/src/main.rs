//! `presence-server [--config FILE.json] [--addr HOST:PORT]`
use presence_server::config::{self, Source};
use presence_server::App;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, source) = match config::load(&args, |name| std::env::var(name).ok()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("presence-server: {e}");
            std::process::exit(2);
        }
    };
    match source {
        Source::Development => eprintln!(
            "presence-server: development settings (well-known secrets, /dev/token on); \
             pass --config FILE.json for anything else"
        ),
        Source::File(path) => eprintln!("presence-server: settings from {path}"),
    }
    let app = match App::new(config) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("presence-server: {e}");
            std::process::exit(2);
        }
    };
    let cluster = app.engine.cluster_status();
    if let Some(node) = cluster["node_id"].as_str() {
        eprintln!("presence-server: cluster mode, node {node} (link state in /metrics)");
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    if let Err(e) = runtime.block_on(presence_server::run(app)) {
        eprintln!("presence-server: {e}");
        std::process::exit(1);
    }
}
