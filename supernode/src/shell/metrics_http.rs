//! Prometheus text at `/metrics` and liveness at `/healthz` on `--metrics-listen`: a tiny
//! HTTP/1.1 responder (one request per connection, 8 KiB of request head, 5 s to send it).

use crate::core::Stats;
use metrics_exporter_prometheus::PrometheusHandle;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Installs the global Prometheus recorder and describes the supernode's metrics.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| e.to_string())?;
    metrics::describe_gauge!("supernode_clients", "open client connections");
    metrics::describe_gauge!("supernode_sessions", "homed client sessions");
    metrics::describe_gauge!("supernode_records", "user records held for the mesh");
    metrics::describe_gauge!("supernode_cache_entries", "cached search answers");
    metrics::describe_counter!("supernode_searches_total", "searches by source");
    metrics::describe_gauge!(
        "supernode_cache_hit_ratio",
        "cached share of answered searches"
    );
    metrics::describe_gauge!(
        "supernode_messages_per_search",
        "mesh and login-server messages per search"
    );
    metrics::describe_counter!("supernode_presence_fanout_total", "watchers notified");
    metrics::describe_counter!(
        "supernode_presence_deliveries_total",
        "presence pushed to clients"
    );
    metrics::describe_counter!(
        "supernode_mesh_messages_total",
        "mesh messages by direction"
    );
    metrics::describe_counter!("supernode_busy_total", "Busy answers");
    metrics::describe_counter!("supernode_shed_total", "work shed under load");
    metrics::describe_gauge!("supernode_resident_bytes", "resident memory");
    Ok(handle)
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Copies the core's counters into the metrics registry.
pub fn publish(stats: &Stats) {
    metrics::gauge!("supernode_clients").set(stats.clients as f64);
    metrics::gauge!("supernode_sessions").set(stats.sessions as f64);
    metrics::gauge!("supernode_parked_sessions").set(stats.parked as f64);
    metrics::counter!("supernode_park_refused_total").absolute(stats.park_refused);
    metrics::counter!("supernode_wakes_total").absolute(stats.wakes);
    metrics::gauge!("supernode_records").set(stats.records as f64);
    metrics::gauge!("supernode_cache_entries").set(stats.cache_entries as f64);
    for (source, count) in [
        ("local", stats.searches_local),
        ("cache", stats.searches_cached),
        ("mesh", stats.searches_mesh),
        ("login", stats.searches_login),
        ("failed", stats.searches_failed),
        ("rate_limited", stats.searches_rate_limited),
    ] {
        metrics::counter!("supernode_searches_total", "source" => source).absolute(count);
    }
    let answered =
        stats.searches_local + stats.searches_cached + stats.searches_mesh + stats.searches_login;
    if answered > 0 {
        metrics::gauge!("supernode_cache_hit_ratio")
            .set(stats.searches_cached as f64 / answered as f64);
    }
    if stats.searches > 0 {
        metrics::gauge!("supernode_messages_per_search")
            .set(stats.search_messages as f64 / stats.searches as f64);
    }
    metrics::counter!("supernode_presence_fanout_total").absolute(stats.presence_fanout);
    metrics::counter!("supernode_presence_deliveries_total").absolute(stats.presence_deliveries);
    metrics::counter!("supernode_mesh_messages_total", "direction" => "in")
        .absolute(stats.mesh_messages_in);
    metrics::counter!("supernode_mesh_messages_total", "direction" => "out")
        .absolute(stats.mesh_messages_out);
    metrics::counter!("supernode_busy_total").absolute(stats.busy_answers);
    metrics::counter!("supernode_shed_total").absolute(stats.shed);
    if let Some(bytes) = resident_bytes() {
        metrics::gauge!("supernode_resident_bytes").set(bytes as f64);
    }
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &handle)).await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD_BYTES {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", handle.render()),
        (Some("GET"), Some("/healthz")) => ("200 OK", "ok\n".to_owned()),
        (Some("GET"), _) => ("404 Not Found", "not found\n".to_owned()),
        _ => ("405 Method Not Allowed", "method not allowed\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
