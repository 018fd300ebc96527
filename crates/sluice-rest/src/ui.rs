//! The web UI: pages rendered on the server (maud), with no script at all.
//! A running job's pages reload themselves every two seconds; buttons are
//! plain forms.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use sluice_checkpoint::CheckpointStatus;
use sluice_cluster::JobView;

use crate::api::{self, checkpoint_status, task_manager_id, vertex_figures};
use crate::rates::BackPressureLevel;
use crate::Dashboard;

type Shared = State<Arc<Dashboard>>;

pub(crate) fn routes() -> Router<Arc<Dashboard>> {
    Router::new()
        .route("/", get(overview))
        .route("/favicon.ico", get(favicon))
        .route("/ui/taskmanagers", get(task_managers))
        .route("/ui/jobs/{id}", get(job))
        .route("/ui/jobs/{id}/checkpoints", get(checkpoints))
        .route("/ui/jobs/{id}/checkpoints/{checkpoint}", get(checkpoint))
        .route("/ui/jobs/{id}/exceptions", get(exceptions))
        .route("/ui/jobs/{id}/config", get(config))
        .route("/ui/jobs/{id}/cancel", post(cancel))
        .route("/ui/jobs/{id}/savepoint", post(savepoint))
}

const STYLE: &str = "
body { font: 14px system-ui, sans-serif; margin: 0; color: #222; }
header { background: #1f3a5f; color: #fff; padding: 10px 20px; }
header a { color: #fff; margin-right: 16px; text-decoration: none; }
main { padding: 16px 20px; }
table { border-collapse: collapse; margin: 8px 0 20px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f2f2f2; }
.OK { background: #d8f0dc; } .LOW { background: #fff1c2; } .HIGH { background: #f7c9c9; }
.RUNNING { color: #1565c0; } .FINISHED, .COMPLETED { color: #2e7d32; }
.FAILED, .CANCELED { color: #c62828; }
form { display: inline; } button { margin-right: 8px; }
nav a { margin-right: 12px; }
.note { color: #555; }
";

fn page(title: &str, refresh: bool, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    @if refresh { meta http-equiv="refresh" content="2"; }
                    title { (title) " · Sluice" }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header {
                        a href="/" { strong { "Sluice" } }
                        a href="/" { "Jobs" }
                        a href="/ui/taskmanagers" { "TaskManagers" }
                        a href="/metrics" { "Metrics" }
                        a href="/openapi.json" { "REST API" }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, page("Not found", false, html! { h1 { (what) " not found" } }))
        .into_response()
}

fn find(d: &Dashboard, id: &str) -> Result<JobView, Response> {
    d.job(id).ok_or_else(|| not_found(&format!("job {id}")))
}

fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{}.{:01} s", s, (ms % 1000) / 100),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// Milliseconds since the epoch as a UTC time, e.g. `2026-11-30T08:57:39.123Z`.
fn time(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

fn watermark(w: Option<i64>) -> String {
    match w {
        None => "–".into(),
        Some(i64::MAX) => "end of input".into(),
        Some(w) => w.to_string(),
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..=9_999 => format!("{n} B"),
        10_000..=9_999_999 => format!("{:.1} KB", n as f64 / 1e3),
        _ => format!("{:.1} MB", n as f64 / 1e6),
    }
}

async fn favicon() -> Response {
    const ICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>\
        <rect width='16' height='16' rx='3' fill='#1f3a5f'/>\
        <path d='M2 10 Q5 6 8 10 T14 10' stroke='#fff' stroke-width='2' fill='none'/></svg>";
    ([(header::CONTENT_TYPE, "image/svg+xml")], ICON).into_response()
}

async fn overview(State(d): Shared) -> Html<String> {
    let jobs = d.jobs();
    let running = jobs.iter().any(|j| !j.status().is_terminal());
    page(
        "Jobs",
        running,
        html! {
            h1 { "Jobs" }
            table id="jobs" {
                tr { th { "Name" } th { "Job id" } th { "Status" } th { "Started" } th { "Duration" } th { "Tasks" } }
                @for j in &jobs {
                    @let state = j.state();
                    tr class="job" data-job-id=(j.job_id()) {
                        td { a href={ "/ui/jobs/" (j.job_id()) } { (j.job_name()) } }
                        td { code { (j.job_id()) } }
                        td class=(j.status().flink_name()) { (j.status().flink_name()) }
                        td { (time(state.start_time())) }
                        td { (duration(state.end_time().unwrap_or_else(sluice_cluster::job_status::now_ms) - state.start_time())) }
                        td { (j.job_graph().vertices.iter().map(|v| v.parallelism).sum::<usize>()) }
                    }
                }
            }
            @if jobs.is_empty() { p.note { "No job submitted yet." } }
        },
    )
}

fn job_nav(job: &JobView) -> Markup {
    let id = job.job_id();
    html! {
        nav {
            a href={ "/ui/jobs/" (id) } { "Overview" }
            a href={ "/ui/jobs/" (id) "/checkpoints" } { "Checkpoints" }
            a href={ "/ui/jobs/" (id) "/exceptions" } { "Exceptions" }
            a href={ "/ui/jobs/" (id) "/config" } { "Configuration" }
            a href={ "/jobs/" (id) } { "JSON" }
        }
    }
}

/// Each vertex's column (longest path from a source) and row.
fn layout(job: &JobView) -> Vec<(usize, usize)> {
    let jg = job.job_graph();
    let mut depth = vec![0usize; jg.vertices.len()];
    // Vertices form a DAG: |V| passes settle the longest paths.
    for _ in 0..jg.vertices.len() {
        for e in &jg.edges {
            depth[e.target_vertex] = depth[e.target_vertex].max(depth[e.source_vertex] + 1);
        }
    }
    let mut rows = vec![0usize; jg.vertices.len() + 1];
    depth
        .iter()
        .map(|&col| {
            let row = rows[col];
            rows[col] += 1;
            (col, row)
        })
        .collect()
}

const BOX_W: usize = 250;
const BOX_H: usize = 112;
const GAP_X: usize = 90;
const GAP_Y: usize = 30;

/// The job graph as inline SVG. Its elements are closed explicitly (`{}`):
/// inside `<svg>` a browser does not treat `<rect>` or `<path>` as void, so
/// an unclosed one would swallow the text after it.
fn graph(d: &Dashboard, job: &JobView) -> Markup {
    let jg = job.job_graph();
    let places = layout(job);
    let at = |v: usize| {
        let (col, row) = places[v];
        (20 + col * (BOX_W + GAP_X), 20 + row * (BOX_H + GAP_Y))
    };
    let width = 40 + places.iter().map(|p| p.0 + 1).max().unwrap_or(1) * (BOX_W + GAP_X);
    let height = 40 + places.iter().map(|p| p.1 + 1).max().unwrap_or(1) * (BOX_H + GAP_Y);
    html! {
        svg id="job-graph" xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) {
            defs {
                marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto" {
                    path d="M0 0 L10 5 L0 10 z" fill="#555" {}
                }
            }
            @for e in &jg.edges {
                @let (x1, y1) = at(e.source_vertex);
                @let (x2, y2) = at(e.target_vertex);
                @let (sx, sy, tx, ty) = (x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2);
                g class="edge" data-partitioner=(e.partitioner.name()) {
                    path d={ "M" (sx) " " (sy) " C" (sx + GAP_X / 2) " " (sy) " " (tx - GAP_X / 2) " " (ty) " " (tx) " " (ty) }
                        stroke="#555" fill="none" marker-end="url(#arrow)" {}
                    text x=((sx + tx) / 2) y=((sy + ty) / 2 - 6) text-anchor="middle" font-size="11" fill="#333" {
                        (e.partitioner.name())
                    }
                }
            }
            @for v in &jg.vertices {
                @let (x, y) = at(v.id);
                @let f = vertex_figures(d, job, v.id);
                @let fill = match f.level { BackPressureLevel::Ok => "#d8f0dc", BackPressureLevel::Low => "#fff1c2", BackPressureLevel::High => "#f7c9c9" };
                g class="vertex" data-vertex-id=(v.id) data-backpressure=(f.level.label()) {
                    rect x=(x) y=(y) width=(BOX_W) height=(BOX_H) rx="6" fill=(fill) stroke="#444" {}
                    @for (i, node) in v.nodes.iter().take(3).enumerate() {
                        text x=(x + 8) y=(y + 16 + i * 14) font-size="12" font-weight=(if i == 0 { "bold" } else { "normal" }) {
                            (truncate(&jg.stream_graph.nodes[*node].name, 34))
                        }
                    }
                    @if v.nodes.len() > 3 {
                        text x=(x + 8) y=(y + 58) font-size="11" fill="#555" { "+" (v.nodes.len() - 3) " more chained" }
                    }
                    text x=(x + 8) y=(y + 74) font-size="11" {
                        "parallelism " (v.parallelism) " · " (f.level.label()) " · busy " (format!("{:.0}%", f.busy_ratio * 100.0))
                    }
                    text x=(x + 8) y=(y + 88) font-size="11" {
                        "in " (format!("{:.0}", f.records_in_per_second)) "/s · out " (format!("{:.0}", f.records_out_per_second)) "/s"
                    }
                    text x=(x + 8) y=(y + 102) font-size="11" { "watermark " (watermark(f.watermark)) }
                }
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

#[derive(Deserialize)]
struct JobQuery {
    savepoint: Option<String>,
}

async fn job(State(d): Shared, Path(id): Path<String>, Query(q): Query<JobQuery>) -> Response {
    let job = match find(&d, &id) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let state = job.state();
    let running = !job.status().is_terminal();
    let savepoint = q.savepoint.as_ref().map(|t| {
        let s = d.savepoints.lock().expect("savepoints lock").get(t).cloned();
        match s {
            Some(crate::SavepointTrigger::InProgress) => "savepoint in progress…".to_string(),
            Some(crate::SavepointTrigger::Completed(path)) => format!("savepoint written: {path}"),
            Some(crate::SavepointTrigger::Failed(e)) => format!("savepoint failed: {e}"),
            None => format!("no savepoint request {t}"),
        }
    });
    let jg = job.job_graph();
    page(
        job.job_name(),
        running,
        html! {
            h1 { (job.job_name()) " " span class=(job.status().flink_name()) { (job.status().flink_name()) } }
            p { "Job " code { (job.job_id()) } " · running for " (duration(state.end_time().unwrap_or_else(sluice_cluster::job_status::now_ms) - state.start_time())) " · restarts " (job.restarts()) }
            (job_nav(&job))
            @if running {
                p {
                    form method="post" action={ "/ui/jobs/" (job.job_id()) "/cancel" } { button id="cancel" { "Cancel job" } }
                    @if job.checkpoints_enabled() {
                        form method="post" action={ "/ui/jobs/" (job.job_id()) "/savepoint" } { button id="savepoint" { "Trigger savepoint" } }
                    }
                }
            }
            @if let Some(s) = savepoint { p.note id="savepoint-status" { (s) } }
            h2 { "Job graph" }
            (graph(&d, &job))
            h2 { "Vertices" }
            table id="vertices" {
                tr { th { "Vertex" } th { "Parallelism" } th { "Back pressure" } th { "Busy" } th { "Records in/s" } th { "Records out/s" } th { "Records in" } th { "Records out" } th { "Watermark" } }
                @for v in &jg.vertices {
                    @let f = vertex_figures(&d, &job, v.id);
                    tr {
                        td { (v.name) }
                        td { (v.parallelism) }
                        td class=(f.level.label()) { (f.level.label()) " (" (format!("{:.2}", f.back_pressured_ratio)) ")" }
                        td { (format!("{:.0}%", f.busy_ratio * 100.0)) }
                        td { (format!("{:.0}", f.records_in_per_second)) }
                        td { (format!("{:.0}", f.records_out_per_second)) }
                        td { (f.records_in) }
                        td { (f.records_out) }
                        td { (watermark(f.watermark)) }
                    }
                }
            }
            h2 { "Subtasks" }
            table id="subtasks" {
                tr { th { "Subtask" } th { "TaskManager" } th { "Slot" } th { "Back pressure" } th { "Busy ms/s" } th { "Back-pressured ms/s" } th { "Idle ms/s" } th { "Watermark" } }
                @for ev in job.execution_graph().vertices.iter().flatten() {
                    @let r = d.rates(job.job_id(), ev.vertex, ev.subtask_index);
                    @let m = job.subtask_metrics().iter().find(|(v, s, _)| *v == ev.vertex && *s == ev.subtask_index);
                    tr {
                        td { (ev.name) }
                        td { (task_manager_id(ev.slot.task_manager)) }
                        td { (ev.slot.slot) }
                        td class=(r.level().label()) { (r.level().label()) }
                        td { (format!("{:.0}", r.busy_ms_per_second)) }
                        td { (format!("{:.0}", r.back_pressured_ms_per_second)) }
                        td { (format!("{:.0}", r.idle_ms_per_second)) }
                        td { (watermark(m.and_then(|(.., m)| m.watermark()))) }
                    }
                }
            }
        },
    )
    .into_response()
}

async fn checkpoints(State(d): Shared, Path(id): Path<String>) -> Response {
    let job = match find(&d, &id) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let stats = job.checkpoint_stats();
    let tasks = job.subtask_metrics().len();
    page(
        &format!("{} checkpoints", job.job_name()),
        !job.status().is_terminal(),
        html! {
            h1 { (job.job_name()) ": checkpoints" }
            (job_nav(&job))
            @if !job.checkpoints_enabled() { p.note { "This job does not checkpoint." } }
            @if let Some(c) = job.job_graph().stream_graph.checkpoint_config.as_ref() {
                p { "Every " (duration(c.interval.as_millis() as i64)) ", " (format!("{:?}", c.mode)) ", timeout " (duration(c.timeout.as_millis() as i64)) }
            }
            table id="checkpoints" {
                tr { th { "Id" } th { "Status" } th { "Acknowledged" } th { "Triggered" } th { "Duration" } th { "State size" } th { "Alignment" } th { "Sync" } }
                @for c in stats.iter().rev() {
                    tr class="checkpoint" data-status=(checkpoint_status(&c.status)) {
                        td { a href={ "/ui/jobs/" (job.job_id()) "/checkpoints/" (c.id) } { (c.id) } }
                        td class=(checkpoint_status(&c.status)) {
                            (checkpoint_status(&c.status))
                            @if c.is_savepoint { " (savepoint)" }
                            @if let CheckpointStatus::Failed(why) = &c.status { ": " (why) }
                        }
                        td { (c.acks.len()) "/" (tasks) }
                        td { (time(c.trigger_time)) }
                        td { (c.duration_ms.map_or("–".to_string(), |ms| format!("{ms} ms"))) }
                        td { (bytes(c.state_size)) }
                        td { (c.alignment_ms) " ms" }
                        td { (c.sync_ms) " ms" }
                    }
                }
            }
        },
    )
    .into_response()
}

async fn checkpoint(State(d): Shared, Path((id, checkpoint)): Path<(String, String)>) -> Response {
    let job = match find(&d, &id) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let stats = job.checkpoint_stats();
    let Some(c) = checkpoint.parse::<u64>().ok().and_then(|cid| stats.iter().find(|c| c.id == cid))
    else {
        return not_found(&format!("checkpoint {checkpoint} of job {id}"));
    };
    let subtasks = job.subtask_metrics();
    let vertices = &job.job_graph().vertices;
    page(
        &format!("checkpoint {}", c.id),
        c.status == CheckpointStatus::InProgress,
        html! {
            h1 { "Checkpoint " (c.id) " " span class=(checkpoint_status(&c.status)) { (checkpoint_status(&c.status)) } }
            (job_nav(&job))
            table id="acknowledgements" {
                tr { th { "Subtask" } th { "Acknowledged" } th { "After" } th { "State size" } th { "Alignment" } th { "Sync" } }
                @for a in &c.acks {
                    @let name = subtasks.get(a.task).map(|(v, s, _)| format!("{} ({}/{})", vertices[*v].name, s + 1, vertices[*v].parallelism)).unwrap_or_default();
                    tr class="ack" {
                        td { (name) }
                        td { (time(a.ack_time)) }
                        td { (a.ack_time - c.trigger_time) " ms" }
                        td { (bytes(a.state_size)) }
                        td { (a.alignment_ms) " ms" }
                        td { (a.sync_ms) " ms" }
                    }
                }
            }
        },
    )
    .into_response()
}

async fn exceptions(State(d): Shared, Path(id): Path<String>) -> Response {
    let job = match find(&d, &id) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let list = job.exceptions();
    page(
        &format!("{} exceptions", job.job_name()),
        !job.status().is_terminal(),
        html! {
            h1 { (job.job_name()) ": exceptions" }
            (job_nav(&job))
            @if list.is_empty() { p.note { "No failure so far." } }
            table id="exceptions" {
                tr { th { "Time" } th { "Origin" } th { "Then" } th { "Cause" } }
                @for e in list.iter().rev() {
                    tr class="exception" {
                        td { (time(e.timestamp)) }
                        td { (format!("{:?}", e.origin)) }
                        td { (if e.restarted { "restarted" } else { "failed" }) }
                        td { pre { (e.cause) } }
                    }
                }
            }
        },
    )
    .into_response()
}

async fn config(State(d): Shared, Path(id): Path<String>) -> Response {
    let job = match find(&d, &id) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let c = &job.job_graph().stream_graph.config;
    page(
        &format!("{} configuration", job.job_name()),
        false,
        html! {
            h1 { (job.job_name()) ": configuration" }
            (job_nav(&job))
            table id="config" {
                tr { th { "Parallelism" } td { (c.parallelism) } }
                tr { th { "Max parallelism" } td { (c.max_parallelism) } }
                tr { th { "Batch size" } td { (c.batch_size) } }
                tr { th { "Buffer timeout" } td { (c.buffer_timeout.as_millis()) " ms" } }
                tr { th { "Auto watermark interval" } td { (c.auto_watermark_interval.as_millis()) " ms" } }
                tr { th { "Checkpoint storage" } td { (job.job_graph().stream_graph.checkpoint_storage.clone().unwrap_or_else(|| "–".into())) } }
            }
            h2 { "Global job parameters" }
            table id="job-parameters" {
                tr { th { "Key" } th { "Value" } }
                @for (k, v) in &c.job_parameters { tr { td { (k) } td { (v) } } }
            }
        },
    )
    .into_response()
}

async fn task_managers(State(d): Shared) -> Html<String> {
    let tms = api::task_manager_slots(&d);
    page(
        "TaskManagers",
        false,
        html! {
            h1 { "TaskManagers" }
            table id="taskmanagers" {
                tr { th { "Id" } th { "Slots" } th { "Free" } th { "Used" } }
                @for (id, slots, free) in &tms {
                    tr class="taskmanager" {
                        td { (task_manager_id(*id)) }
                        td { (slots) }
                        td { (free) }
                        td { (slots - free) }
                    }
                }
            }
        },
    )
}

/// A form posted from another site is refused: the browser says where it came from.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
}

async fn cancel(State(d): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return api::error(StatusCode::FORBIDDEN, "cross-site request refused".into());
    }
    match find(&d, &id) {
        Ok(job) => {
            job.cancel();
            Redirect::to(&format!("/ui/jobs/{}", job.job_id())).into_response()
        }
        Err(r) => r,
    }
}

async fn savepoint(State(d): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return api::error(StatusCode::FORBIDDEN, "cross-site request refused".into());
    }
    let job = match find(&d, &id) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let id = job.job_id().to_string();
    match api::start_savepoint(&d, job, None, false) {
        Ok(trigger) => Redirect::to(&format!("/ui/jobs/{id}?savepoint={trigger}")).into_response(),
        Err(r) => r,
    }
}
