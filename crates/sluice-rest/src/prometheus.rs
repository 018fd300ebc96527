//! `/metrics` in Prometheus' text format: per-subtask counters and time
//! accounting, watermark lag, source lag, checkpoints and restarts. The
//! registry is built per scrape from the live counters, so nothing is kept
//! twice.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_checkpoint::CheckpointStatus;

use crate::Dashboard;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    job: String,
    job_name: String,
    vertex: String,
    subtask: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
    job_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckpointLabels {
    job: String,
    job_name: String,
    status: String,
}

type Counters<L> = Family<L, Counter<u64, AtomicU64>>;
type Gauges<L> = Family<L, Gauge<f64, AtomicU64>>;

pub(crate) async fn metrics(State(d): State<Arc<Dashboard>>) -> Response {
    match render(&d) {
        Ok(text) => (
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn render(d: &Dashboard) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("sluice");
    let records_in = Counters::<TaskLabels>::default();
    let records_out = Counters::<TaskLabels>::default();
    let errors = Counters::<TaskLabels>::default();
    let busy = Gauges::<TaskLabels>::default();
    let back_pressured = Gauges::<TaskLabels>::default();
    let idle = Gauges::<TaskLabels>::default();
    let watermark_lag = Gauges::<TaskLabels>::default();
    let source_lag = Gauges::<TaskLabels>::default();
    let restarts = Counters::<JobLabels>::default();
    let checkpoints = Counters::<CheckpointLabels>::default();
    let checkpoint_duration = Gauges::<JobLabels>::default();
    let checkpoint_size = Gauges::<JobLabels>::default();
    let now = sluice_cluster::job_status::now_ms();
    for job in d.jobs() {
        let (id, name) = (job.job_id().to_string(), job.job_name().to_string());
        let vertices = &job.job_graph().vertices;
        for (v, s, m) in job.subtask_metrics() {
            let labels = TaskLabels {
                job: id.clone(),
                job_name: name.clone(),
                vertex: vertices[*v].name.clone(),
                subtask: s.to_string(),
            };
            records_in.get_or_create(&labels).inc_by(m.records_in());
            records_out.get_or_create(&labels).inc_by(m.records_out().max(m.source_records()));
            errors.get_or_create(&labels).inc_by(m.records_in_errors());
            let r = d.rates(&id, *v, *s);
            busy.get_or_create(&labels).set(r.busy_ms_per_second);
            back_pressured.get_or_create(&labels).set(r.back_pressured_ms_per_second);
            idle.get_or_create(&labels).set(r.idle_ms_per_second);
            // Event time only: a watermark near the end of time means the input ended.
            if let Some(w) = m.watermark().filter(|w| *w > 0 && *w < i64::MAX / 2) {
                watermark_lag.get_or_create(&labels).set((now - w) as f64);
            }
            if let Some(lag) = m.source_lag() {
                source_lag.get_or_create(&labels).set(lag as f64);
            }
        }
        let job_labels = JobLabels { job: id.clone(), job_name: name.clone() };
        restarts.get_or_create(&job_labels).inc_by(job.restarts() as u64);
        let stats = job.checkpoint_stats();
        for status in ["COMPLETED", "FAILED", "IN_PROGRESS"] {
            let n = stats.iter().filter(|c| crate::api::checkpoint_status(&c.status) == status);
            let labels =
                CheckpointLabels { job: id.clone(), job_name: name.clone(), status: status.into() };
            checkpoints.get_or_create(&labels).inc_by(n.count() as u64);
        }
        if let Some(last) = stats.iter().rev().find(|c| c.status == CheckpointStatus::Completed) {
            checkpoint_duration
                .get_or_create(&job_labels)
                .set(last.duration_ms.unwrap_or(0) as f64);
            checkpoint_size.get_or_create(&job_labels).set(last.state_size as f64);
        }
    }
    registry.register("task_records_in", "Records a subtask received", records_in);
    registry.register("task_records_out", "Records a subtask sent or produced", records_out);
    registry.register("task_records_in_errors", "Records a source could not decode", errors);
    registry.register("task_busy_time_ms_per_second", "Time spent processing", busy);
    registry.register(
        "task_back_pressured_time_ms_per_second",
        "Time spent waiting for output credit",
        back_pressured,
    );
    registry.register("task_idle_time_ms_per_second", "Time spent waiting for input", idle);
    registry.register(
        "task_watermark_lag_ms",
        "Wall clock minus the subtask's current watermark",
        watermark_lag,
    );
    registry.register(
        "source_records_lag",
        "Records a source is behind the end of its input (Kafka: behind the partitions' ends)",
        source_lag,
    );
    registry.register("job_restarts", "Restarts after failures", restarts);
    registry.register("job_checkpoints", "Checkpoints by status", checkpoints);
    registry.register(
        "job_last_checkpoint_duration_ms",
        "Duration of the latest completed checkpoint",
        checkpoint_duration,
    );
    registry.register(
        "job_last_checkpoint_size_bytes",
        "State size of the latest completed checkpoint",
        checkpoint_size,
    );
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}
