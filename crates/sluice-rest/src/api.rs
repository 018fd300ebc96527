//! The REST API, with Flink's paths and JSON field names where Flink has
//! them, so that scripts and dashboards written for Flink carry over.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_checkpoint::{CheckpointStats, CheckpointStatus};
use sluice_cluster::{JobStatus, JobView};

use crate::rates::BackPressureLevel;
use crate::{Dashboard, SavepointTrigger};

/// The OpenAPI document of this API.
pub(crate) const OPENAPI: &str = include_str!("../openapi.json");

type Shared = State<Arc<Dashboard>>;

pub(crate) fn routes() -> Router<Arc<Dashboard>> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/config", get(config))
        .route("/overview", get(overview))
        .route("/jobs", get(jobs))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{id}", get(job).patch(cancel))
        .route("/jobs/{id}/plan", get(plan))
        .route("/jobs/{id}/config", get(job_config))
        .route("/jobs/{id}/exceptions", get(exceptions))
        .route("/jobs/{id}/vertices/{vertex}", get(vertex))
        .route("/jobs/{id}/vertices/{vertex}/backpressure", get(backpressure))
        .route("/jobs/{id}/vertices/{vertex}/watermarks", get(watermarks))
        .route("/jobs/{id}/checkpoints", get(checkpoints))
        .route("/jobs/{id}/checkpoints/config", get(checkpoint_config))
        .route("/jobs/{id}/checkpoints/details/{checkpoint}", get(checkpoint_details))
        .route("/jobs/{id}/savepoints", post(trigger_savepoint))
        .route("/jobs/{id}/savepoints/{trigger}", get(savepoint_status))
        .route("/jobs/{id}/stop", post(stop_with_savepoint))
        .route("/taskmanagers", get(task_managers))
        .route("/taskmanagers/{tm}", get(task_manager))
}

/// Flink's error body: `{"errors": [message]}`.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "errors": [message] }))).into_response()
}

fn not_found(what: &str, id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("{what} '{id}' not found"))
}

type Reply = std::result::Result<Json<Value>, Response>;

fn find_job(d: &Dashboard, id: &str) -> std::result::Result<JobView, Response> {
    d.job(id).ok_or_else(|| not_found("job", id))
}

fn find_vertex(job: &JobView, vertex: &str) -> std::result::Result<usize, Response> {
    vertex
        .parse::<usize>()
        .ok()
        .filter(|v| *v < job.job_graph().vertices.len())
        .ok_or_else(|| not_found(&format!("vertex of job {}", job.job_id()), vertex))
}

async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn config() -> Json<Value> {
    Json(json!({
        "refresh-interval": 2000,
        "timezone-name": "UTC",
        "timezone-offset": 0,
        "flink-version": concat!("sluice ", env!("CARGO_PKG_VERSION")),
        "flink-revision": "",
        "features": { "web-submit": false, "web-cancel": true, "web-history": false },
    }))
}

/// Slots of every TaskManager of the jobs shown: (id, slots, slots free).
pub(crate) fn task_manager_slots(d: &Dashboard) -> Vec<(usize, usize, usize)> {
    let mut seen = std::collections::BTreeMap::new();
    for job in d.jobs() {
        for tm in job.task_managers() {
            seen.entry(tm.index()).or_insert_with(|| (tm.slots(), tm.free_slots().len()));
        }
    }
    seen.into_iter().map(|(id, (slots, free))| (id, slots, free)).collect()
}

pub(crate) fn task_manager_id(index: usize) -> String {
    format!("taskmanager-{index}")
}

async fn overview(State(d): Shared) -> Json<Value> {
    let jobs = d.jobs();
    let count = |s: JobStatus| jobs.iter().filter(|j| j.status() == s).count();
    let tms = task_manager_slots(&d);
    Json(json!({
        "taskmanagers": tms.len(),
        "slots-total": tms.iter().map(|t| t.1).sum::<usize>(),
        "slots-available": tms.iter().map(|t| t.2).sum::<usize>(),
        "jobs-running": jobs.iter().filter(|j| !j.status().is_terminal()).count(),
        "jobs-finished": count(JobStatus::Finished),
        "jobs-cancelled": count(JobStatus::Canceled),
        "jobs-failed": count(JobStatus::Failed),
        "flink-version": concat!("sluice ", env!("CARGO_PKG_VERSION")),
    }))
}

async fn jobs(State(d): Shared) -> Json<Value> {
    let jobs: Vec<Value> = d
        .jobs()
        .iter()
        .map(|j| json!({ "id": j.job_id(), "status": j.status().flink_name() }))
        .collect();
    Json(json!({ "jobs": jobs }))
}

fn now_ms() -> i64 {
    sluice_cluster::job_status::now_ms()
}

/// Start, end and duration as Flink reports them (end −1 while running).
fn times(job: &JobView) -> (i64, i64, i64) {
    let state = job.state();
    let start = state.start_time();
    let end = state.end_time();
    (start, end.unwrap_or(-1), end.unwrap_or_else(now_ms) - start)
}

fn job_summary(job: &JobView) -> Value {
    let (start, end, duration) = times(job);
    let tasks: usize = job.job_graph().vertices.iter().map(|v| v.parallelism).sum();
    let state = job.status().flink_name();
    json!({
        "jid": job.job_id(),
        "name": job.job_name(),
        "state": state,
        "start-time": start,
        "end-time": end,
        "duration": duration,
        "last-modification": job.state().timestamps.last().map_or(start, |t| t.1),
        "tasks": { "total": tasks, (state.to_lowercase()): tasks },
    })
}

async fn jobs_overview(State(d): Shared) -> Json<Value> {
    Json(json!({ "jobs": d.jobs().iter().map(job_summary).collect::<Vec<_>>() }))
}

/// A vertex's counters and rates, summed over its subtasks.
pub(crate) struct VertexFigures {
    pub records_in: u64,
    pub records_out: u64,
    pub records_in_per_second: f64,
    pub records_out_per_second: f64,
    pub busy_ratio: f64,
    pub level: BackPressureLevel,
    pub back_pressured_ratio: f64,
    pub watermark: Option<i64>,
}

pub(crate) fn vertex_figures(d: &Dashboard, job: &JobView, vertex: usize) -> VertexFigures {
    let subtasks: Vec<_> = job.subtask_metrics().iter().filter(|(v, ..)| *v == vertex).collect();
    let rates: Vec<_> = subtasks.iter().map(|(v, s, _)| d.rates(job.job_id(), *v, *s)).collect();
    let worst = rates.iter().map(|r| r.back_pressured_ratio()).fold(0.0, f64::max);
    let n = rates.len().max(1) as f64;
    VertexFigures {
        records_in: subtasks.iter().map(|(.., m)| m.records_in()).sum(),
        records_out: subtasks.iter().map(|(.., m)| m.records_out().max(m.source_records())).sum(),
        records_in_per_second: rates.iter().map(|r| r.records_in_per_second).sum(),
        records_out_per_second: rates.iter().map(|r| r.records_out_per_second).sum(),
        busy_ratio: rates.iter().map(|r| r.busy_ms_per_second).sum::<f64>() / n / 1000.0,
        level: BackPressureLevel::of(worst),
        back_pressured_ratio: worst,
        // The vertex's watermark is its slowest subtask's.
        watermark: subtasks.iter().map(|(.., m)| m.watermark()).min().flatten(),
    }
}

fn vertex_status(job: &JobView) -> &'static str {
    match job.status() {
        JobStatus::Running | JobStatus::Restarting | JobStatus::Failing => "RUNNING",
        s => s.flink_name(),
    }
}

async fn job(State(d): Shared, Path(id): Path<String>) -> Reply {
    let job = find_job(&d, &id)?;
    let (start, end, duration) = times(&job);
    let vertices: Vec<Value> = job
        .job_graph()
        .vertices
        .iter()
        .map(|v| {
            let f = vertex_figures(&d, &job, v.id);
            json!({
                "id": v.id.to_string(),
                "name": v.name,
                "parallelism": v.parallelism,
                "maxParallelism": v.max_parallelism,
                "status": vertex_status(&job),
                "start-time": start,
                "end-time": end,
                "duration": duration,
                "metrics": {
                    "read-records": f.records_in,
                    "write-records": f.records_out,
                    "read-records-complete": true,
                    "write-records-complete": true,
                    "accumulated-busy-time": f.busy_ratio,
                },
            })
        })
        .collect();
    let timestamps: serde_json::Map<String, Value> = job
        .state()
        .timestamps
        .iter()
        .map(|(s, t)| (s.flink_name().to_string(), json!(t)))
        .collect();
    Ok(Json(json!({
        "jid": job.job_id(),
        "name": job.job_name(),
        "isStoppable": false,
        "state": job.status().flink_name(),
        "job-type": "STREAMING",
        "start-time": start,
        "end-time": end,
        "duration": duration,
        "maxParallelism": job.job_graph().vertices.iter().map(|v| v.max_parallelism).max(),
        "now": now_ms(),
        "timestamps": timestamps,
        "vertices": vertices,
        "plan": plan_json(&job),
    })))
}

fn plan_json(job: &JobView) -> Value {
    let jg = job.job_graph();
    let nodes: Vec<Value> = jg
        .vertices
        .iter()
        .map(|v| {
            let inputs: Vec<Value> = jg
                .edges
                .iter()
                .filter(|e| e.target_vertex == v.id)
                .enumerate()
                .map(|(num, e)| {
                    json!({
                        "num": num,
                        "id": e.source_vertex.to_string(),
                        "ship_strategy": e.partitioner.name(),
                        "exchange": "pipelined_bounded",
                    })
                })
                .collect();
            let operators: Vec<&str> =
                v.nodes.iter().map(|n| jg.stream_graph.nodes[*n].name.as_str()).collect();
            json!({
                "id": v.id.to_string(),
                "parallelism": v.parallelism,
                "operator": "",
                "operator_strategy": "",
                "description": v.name,
                "operators": operators,
                "inputs": inputs,
                "optimizer_properties": {},
            })
        })
        .collect();
    json!({ "jid": job.job_id(), "name": job.job_name(), "type": "STREAMING", "nodes": nodes })
}

async fn plan(State(d): Shared, Path(id): Path<String>) -> Reply {
    let job = find_job(&d, &id)?;
    Ok(Json(json!({ "plan": plan_json(&job) })))
}

async fn job_config(State(d): Shared, Path(id): Path<String>) -> Reply {
    let job = find_job(&d, &id)?;
    let config = &job.job_graph().stream_graph.config;
    Ok(Json(json!({
        "jid": job.job_id(),
        "name": job.job_name(),
        "execution-config": {
            "execution-mode": "PIPELINED",
            "restart-strategy": if job.checkpoints_enabled() { "exponential delay" } else { "none" },
            "job-parallelism": config.parallelism,
            "max-parallelism": config.max_parallelism,
            "object-reuse-mode": true,
            "batch-size": config.batch_size,
            "buffer-timeout-ms": config.buffer_timeout.as_millis() as u64,
            "auto-watermark-interval-ms": config.auto_watermark_interval.as_millis() as u64,
            "user-config": config.job_parameters,
        },
    })))
}

async fn exceptions(State(d): Shared, Path(id): Path<String>) -> Reply {
    let job = find_job(&d, &id)?;
    let list = job.exceptions();
    let entries: Vec<Value> = list
        .iter()
        .rev()
        .map(|e| {
            json!({
                "exceptionName": format!("{:?}", e.origin),
                "stacktrace": e.cause,
                "timestamp": e.timestamp,
                "taskName": Value::Null,
                "restarted": e.restarted,
                "concurrentExceptions": [],
            })
        })
        .collect();
    let root = list.last();
    Ok(Json(json!({
        "root-exception": root.map(|e| e.cause.clone()),
        "timestamp": root.map(|e| e.timestamp),
        "all-exceptions": [],
        "truncated": false,
        "exceptionHistory": { "entries": entries, "truncated": false },
    })))
}

async fn vertex(State(d): Shared, Path((id, vertex)): Path<(String, String)>) -> Reply {
    let job = find_job(&d, &id)?;
    let v = find_vertex(&job, &vertex)?;
    let jv = &job.job_graph().vertices[v];
    let (start, end, duration) = times(&job);
    let subtasks: Vec<Value> = job.execution_graph().vertices[v]
        .iter()
        .map(|ev| {
            let metrics = job
                .subtask_metrics()
                .iter()
                .find(|(vx, s, _)| *vx == v && *s == ev.subtask_index)
                .map(|(.., m)| m.clone());
            let r = d.rates(job.job_id(), v, ev.subtask_index);
            json!({
                "subtask": ev.subtask_index,
                "status": vertex_status(&job),
                "attempt": job.restarts(),
                "host": "localhost",
                "taskmanager-id": task_manager_id(ev.slot.task_manager),
                "slot": ev.slot.slot,
                "start-time": start,
                "end-time": end,
                "duration": duration,
                "metrics": {
                    "read-records": metrics.as_ref().map_or(0, |m| m.records_in()),
                    "write-records": metrics.as_ref().map_or(0, |m| m.records_out().max(m.source_records())),
                    "read-records-complete": true,
                    "write-records-complete": true,
                    "busyTimeMsPerSecond": r.busy_ms_per_second,
                    "backPressuredTimeMsPerSecond": r.back_pressured_ms_per_second,
                    "idleTimeMsPerSecond": r.idle_ms_per_second,
                    "numRecordsInPerSecond": r.records_in_per_second,
                    "numRecordsOutPerSecond": r.records_out_per_second,
                },
            })
        })
        .collect();
    Ok(Json(json!({
        "id": v.to_string(),
        "name": jv.name,
        "parallelism": jv.parallelism,
        "maxParallelism": jv.max_parallelism,
        "now": now_ms(),
        "subtasks": subtasks,
    })))
}

async fn backpressure(State(d): Shared, Path((id, vertex)): Path<(String, String)>) -> Reply {
    let job = find_job(&d, &id)?;
    let v = find_vertex(&job, &vertex)?;
    let mut worst = BackPressureLevel::Ok;
    let subtasks: Vec<Value> = job
        .subtask_metrics()
        .iter()
        .filter(|(vx, ..)| *vx == v)
        .map(|(_, s, _)| {
            let r = d.rates(job.job_id(), v, *s);
            worst = worst.max(r.level());
            json!({
                "subtask": s,
                "attempt-number": job.restarts(),
                "backpressureLevel": r.level(),
                "ratio": r.back_pressured_ratio(),
                "idleRatio": r.idle_ms_per_second / 1000.0,
                "busyRatio": r.busy_ms_per_second / 1000.0,
            })
        })
        .collect();
    Ok(Json(json!({
        "status": "ok",
        "backpressureLevel": worst,
        "end-timestamp": now_ms(),
        "subtasks": subtasks,
    })))
}

async fn watermarks(State(d): Shared, Path((id, vertex)): Path<(String, String)>) -> Reply {
    let job = find_job(&d, &id)?;
    let v = find_vertex(&job, &vertex)?;
    let name = if job.job_graph().vertices[v].is_source {
        "currentOutputWatermark"
    } else {
        "currentInputWatermark"
    };
    let list: Vec<Value> = job
        .subtask_metrics()
        .iter()
        .filter(|(vx, ..)| *vx == v)
        .map(|(_, s, m)| {
            // Flink reports the minimum i64 before any watermark arrived.
            let w = m.watermark().unwrap_or(i64::MIN);
            json!({ "id": format!("{s}.{name}"), "value": w.to_string() })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

pub(crate) fn checkpoint_status(s: &CheckpointStatus) -> &'static str {
    match s {
        CheckpointStatus::InProgress => "IN_PROGRESS",
        CheckpointStatus::Completed => "COMPLETED",
        CheckpointStatus::Failed(_) => "FAILED",
    }
}

fn checkpoint_json(c: &CheckpointStats, subtasks: usize) -> Value {
    json!({
        "id": c.id,
        "status": checkpoint_status(&c.status),
        "is_savepoint": c.is_savepoint,
        "trigger_timestamp": c.trigger_time,
        "latest_ack_timestamp": c.acks.iter().map(|a| a.ack_time).max().unwrap_or(-1),
        "state_size": c.state_size,
        "checkpointed_size": c.state_size,
        "end_to_end_duration": c.duration_ms.unwrap_or(-1),
        "alignment_buffered": 0,
        "alignment_duration": c.alignment_ms,
        "sync_duration": c.sync_ms,
        "num_subtasks": subtasks,
        "num_acknowledged_subtasks": c.acks.len(),
        "failure_message": match &c.status { CheckpointStatus::Failed(m) => Some(m.as_str()), _ => None },
    })
}

fn min_max_avg(values: impl Iterator<Item = i64> + Clone) -> Value {
    let n = values.clone().count();
    if n == 0 {
        return json!({ "min": 0, "max": 0, "avg": 0 });
    }
    json!({
        "min": values.clone().min(),
        "max": values.clone().max(),
        "avg": values.sum::<i64>() / n as i64,
    })
}

async fn checkpoints(State(d): Shared, Path(id): Path<String>) -> Reply {
    let job = find_job(&d, &id)?;
    let stats = job.checkpoint_stats();
    let restores = job.state().restores;
    let latest_restore = restores.last().map(|r| {
        json!({
            "id": r.checkpoint_id,
            "restore_timestamp": r.timestamp,
            "is_savepoint": stats.iter().any(|c| c.id == r.checkpoint_id && c.is_savepoint),
            "external_path": r.external_path,
        })
    });
    let subtasks = job.subtask_metrics().len();
    let completed: Vec<&CheckpointStats> =
        stats.iter().filter(|c| c.status == CheckpointStatus::Completed).collect();
    let failed = stats.iter().filter(|c| matches!(c.status, CheckpointStatus::Failed(_)));
    let history: Vec<Value> = stats.iter().rev().map(|c| checkpoint_json(c, subtasks)).collect();
    Ok(Json(json!({
        "counts": {
            "restored": restores.len(),
            "total": stats.len(),
            "in_progress": stats.iter().filter(|c| c.status == CheckpointStatus::InProgress).count(),
            "completed": completed.len(),
            "failed": failed.clone().count(),
        },
        "summary": {
            "state_size": min_max_avg(completed.iter().map(|c| c.state_size as i64)),
            "end_to_end_duration": min_max_avg(completed.iter().filter_map(|c| c.duration_ms)),
            "alignment_duration": min_max_avg(completed.iter().map(|c| c.alignment_ms)),
        },
        "latest": {
            "completed": completed.iter().rev().find(|c| !c.is_savepoint).map(|c| checkpoint_json(c, subtasks)),
            "savepoint": completed.iter().rev().find(|c| c.is_savepoint).map(|c| checkpoint_json(c, subtasks)),
            "failed": failed.clone().next_back().map(|c| checkpoint_json(c, subtasks)),
            "restored": latest_restore,
        },
        "history": history,
    })))
}

async fn checkpoint_config(State(d): Shared, Path(id): Path<String>) -> Reply {
    let job = find_job(&d, &id)?;
    let Some(c) = job.job_graph().stream_graph.checkpoint_config.as_ref() else {
        return Err(not_found("checkpoint configuration (checkpointing is off) of job", &id));
    };
    Ok(Json(json!({
        "mode": format!("{:?}", c.mode).to_lowercase(),
        "interval": c.interval.as_millis() as u64,
        "timeout": c.timeout.as_millis() as u64,
        "min_pause": c.min_pause_between_checkpoints.as_millis() as u64,
        "max_concurrent": 1,
        "tolerable_failed_checkpoints": c.tolerable_failed_checkpoints,
        "unaligned_checkpoints": c.unaligned,
        "aligned_checkpoint_timeout": c.aligned_checkpoint_timeout.as_millis() as u64,
        "externalization": { "enabled": true, "delete_on_cancellation": !c.retain_on_cancellation },
        "checkpoint_storage": job.job_graph().stream_graph.checkpoint_storage,
    })))
}

async fn checkpoint_details(
    State(d): Shared,
    Path((id, checkpoint)): Path<(String, String)>,
) -> Reply {
    let job = find_job(&d, &id)?;
    let stats = job.checkpoint_stats();
    let Some(c) = checkpoint.parse::<u64>().ok().and_then(|cid| stats.iter().find(|c| c.id == cid))
    else {
        return Err(not_found(&format!("checkpoint of job {id}"), &checkpoint));
    };
    let subtasks = job.subtask_metrics();
    let mut body = checkpoint_json(c, subtasks.len());
    let tasks: serde_json::Map<String, Value> = job
        .job_graph()
        .vertices
        .iter()
        .map(|v| {
            let acks: Vec<Value> = c
                .acks
                .iter()
                .filter_map(|a| {
                    let (vx, s, _) = subtasks.get(a.task)?;
                    (*vx == v.id).then(|| {
                        json!({
                            "index": s,
                            "ack_timestamp": a.ack_time,
                            "end_to_end_duration": a.ack_time - c.trigger_time,
                            "state_size": a.state_size,
                            "alignment": { "duration": a.alignment_ms },
                            "checkpoint": { "sync": a.sync_ms },
                        })
                    })
                })
                .collect();
            let value = json!({
                "id": v.id.to_string(),
                "name": v.name,
                "num_subtasks": v.parallelism,
                "num_acknowledged_subtasks": acks.len(),
                "state_size": acks.iter().filter_map(|a| a["state_size"].as_u64()).sum::<u64>(),
                "subtasks": acks,
            });
            (v.id.to_string(), value)
        })
        .collect();
    body["tasks"] = Value::Object(tasks);
    Ok(Json(body))
}

#[derive(Deserialize)]
pub(crate) struct CancelQuery {
    mode: Option<String>,
}

async fn cancel(
    State(d): Shared,
    Path(id): Path<String>,
    Query(q): Query<CancelQuery>,
) -> Response {
    let job = match find_job(&d, &id) {
        Ok(job) => job,
        Err(r) => return r,
    };
    if let Some(mode) = q.mode.as_deref().filter(|m| *m != "cancel") {
        return error(StatusCode::BAD_REQUEST, format!("unknown mode '{mode}': only 'cancel'"));
    }
    if job.status().is_terminal() {
        return error(
            StatusCode::CONFLICT,
            format!("job {id} has already ended ({})", job.status().flink_name()),
        );
    }
    job.cancel();
    (StatusCode::ACCEPTED, Json(json!({}))).into_response()
}

#[derive(Deserialize, Default)]
pub(crate) struct SavepointRequest {
    #[serde(rename = "target-directory", alias = "targetDirectory")]
    target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    cancel_job: bool,
}

/// Starts a savepoint (and a stop after it) on a blocking thread; the
/// request id finds its outcome.
pub(crate) fn start_savepoint(
    d: &Arc<Dashboard>,
    job: JobView,
    dir: Option<String>,
    stop: bool,
) -> std::result::Result<String, Response> {
    if !job.checkpoints_enabled() {
        return Err(error(
            StatusCode::CONFLICT,
            format!("job {} does not checkpoint, so it cannot take a savepoint", job.job_id()),
        ));
    }
    if job.status().is_terminal() {
        return Err(error(StatusCode::CONFLICT, format!("job {} has already ended", job.job_id())));
    }
    let dir = dir.or_else(|| job.job_graph().stream_graph.checkpoint_storage.clone()).ok_or_else(
        || error(StatusCode::BAD_REQUEST, "give a 'target-directory' for the savepoint".into()),
    )?;
    let trigger = format!("{:032x}", rand::random::<u128>());
    d.savepoints
        .lock()
        .expect("savepoints lock")
        .insert(trigger.clone(), SavepointTrigger::InProgress);
    let (d, id) = (d.clone(), trigger.clone());
    std::thread::spawn(move || {
        let outcome =
            if stop { job.stop_with_savepoint(&dir) } else { job.trigger_savepoint(&dir) };
        let state = match outcome {
            Ok(path) => SavepointTrigger::Completed(path),
            Err(e) => SavepointTrigger::Failed(e.report().to_string()),
        };
        d.savepoints.lock().expect("savepoints lock").insert(id, state);
    });
    Ok(trigger)
}

async fn trigger_savepoint(
    State(d): Shared,
    Path(id): Path<String>,
    body: Option<Json<SavepointRequest>>,
) -> Response {
    let request = body.map(|b| b.0).unwrap_or_default();
    savepoint_request(&d, &id, request.target_directory, request.cancel_job)
}

async fn stop_with_savepoint(
    State(d): Shared,
    Path(id): Path<String>,
    body: Option<Json<SavepointRequest>>,
) -> Response {
    let request = body.map(|b| b.0).unwrap_or_default();
    savepoint_request(&d, &id, request.target_directory, true)
}

/// Starts a savepoint (then a stop, with `stop`) and answers with its request id.
fn savepoint_request(d: &Arc<Dashboard>, id: &str, dir: Option<String>, stop: bool) -> Response {
    let started = find_job(d, id).and_then(|job| start_savepoint(d, job, dir, stop));
    match started {
        Ok(trigger) => {
            (StatusCode::ACCEPTED, Json(json!({ "request-id": trigger }))).into_response()
        }
        Err(r) => r,
    }
}

async fn savepoint_status(State(d): Shared, Path((id, trigger)): Path<(String, String)>) -> Reply {
    find_job(&d, &id)?;
    let state = d.savepoints.lock().expect("savepoints lock").get(&trigger).cloned();
    match state {
        None => Err(not_found(&format!("savepoint request of job {id}"), &trigger)),
        Some(SavepointTrigger::InProgress) => {
            Ok(Json(json!({ "status": { "id": "IN_PROGRESS" } })))
        }
        Some(SavepointTrigger::Completed(location)) => Ok(Json(json!({
            "status": { "id": "COMPLETED" },
            "operation": { "location": location },
        }))),
        Some(SavepointTrigger::Failed(cause)) => Ok(Json(json!({
            "status": { "id": "COMPLETED" },
            "operation": { "failure-cause": { "class": "SluiceError", "stack-trace": cause } },
        }))),
    }
}

fn task_manager_json(d: &Dashboard, id: usize, slots: usize, free: usize) -> Value {
    let tasks: Vec<Value> = d
        .jobs()
        .iter()
        .filter(|j| !j.status().is_terminal())
        .flat_map(|j| {
            j.execution_graph()
                .vertices
                .iter()
                .flatten()
                .filter(|ev| ev.slot.task_manager == id)
                .map(|ev| json!({ "job": j.job_id(), "task": ev.name, "slot": ev.slot.slot }))
                .collect::<Vec<_>>()
        })
        .collect();
    json!({
        "id": task_manager_id(id),
        "path": format!("in-process TaskManager {id}"),
        "dataPort": -1,
        "timeSinceLastHeartbeat": 0,
        "slotsNumber": slots,
        "freeSlots": free,
        "hardware": { "cpuCores": std::thread::available_parallelism().map_or(1, |n| n.get()) },
        "tasks": tasks,
    })
}

async fn task_managers(State(d): Shared) -> Json<Value> {
    let list: Vec<Value> = task_manager_slots(&d)
        .into_iter()
        .map(|(id, slots, free)| task_manager_json(&d, id, slots, free))
        .collect();
    Json(json!({ "taskmanagers": list }))
}

async fn task_manager(State(d): Shared, Path(tm): Path<String>) -> Reply {
    task_manager_slots(&d)
        .into_iter()
        .find(|(id, ..)| task_manager_id(*id) == tm)
        .map(|(id, slots, free)| Json(task_manager_json(&d, id, slots, free)))
        .ok_or_else(|| not_found("TaskManager", &tm))
}
