//! The REST API's contract: every route with its status codes and Flink's
//! JSON fields, unknown ids as 404 with a message, backpressure levels of a
//! throttled and an unthrottled job, `/metrics` through a Prometheus
//! parser, and the security rules (token off loopback, no path traversal).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::connectors::DataGeneratorSource;
use sluice::{CheckpointConfig, JobClient, StreamExecutionEnvironment};
use sluice_rest::{Dashboard, RestConfig, RestServer};

/// A job and the REST server showing it, both stopped at the end of the test.
struct Served {
    server: RestServer,
    client: Option<JobClient>,
    job_id: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            client.cancel();
            let _ = client.wait();
        }
    }
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.address())
    }
}

/// generator → map → key_by → sum → (throttled) sink; checkpoints every 200 ms.
fn pipeline(sink_rate: Option<f64>, source_rate: Option<f64>) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1)
        .set_checkpoint_config(CheckpointConfig::new(Duration::from_millis(200)))
        .set_checkpoint_storage("memory://")
        .set_job_parameter("owner", "team-streams");
    let mut source = DataGeneratorSource::new(|i| i, None);
    if let Some(rate) = source_rate {
        source = source.with_rate(rate).unwrap();
    }
    let sums = env
        .from_source(source, "generator")
        .map(|i: u64| (i % 100, 1u64))
        .key_by(|(k, _): &(u64, u64)| *k)
        .sum(|(_, c)| c);
    let sums = match sink_rate {
        Some(rate) => {
            let started = Instant::now();
            let mut n = 0u64;
            sums.map(move |r| {
                n += 1;
                let due = started + Duration::from_secs_f64(n as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                r
            })
        }
        None => sums,
    };
    sums.discard();
    env
}

fn serve(env: StreamExecutionEnvironment, address: &str, token: Option<&str>) -> Served {
    let dashboard = Dashboard::new();
    let config = RestConfig {
        address: address.parse::<SocketAddr>().unwrap(),
        token: token.map(str::to_string),
    };
    let server = RestServer::start(config, dashboard.clone()).unwrap();
    let client = env.execute_async("rest test").unwrap();
    let job_id = client.job_id().to_string();
    dashboard.register(client.view());
    Served { server, client: Some(client), job_id }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// (status, body as JSON or as a string).
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let response = match method {
        "GET" => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        "PATCH" | "POST" => {
            let mut r = if method == "POST" { agent.post(url) } else { agent.patch(url) };
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            match body {
                Some(b) => r.send_json(b),
                None => r.send_empty(),
            }
        }
        _ => unreachable!(),
    };
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn get(s: &Served, path: &str) -> Value {
    let (status, body) = call("GET", &s.url(path), None, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn level(s: &Served, vertex: usize) -> Value {
    get(s, &format!("/jobs/{}/vertices/{vertex}/backpressure", s.job_id))
}

#[test]
fn every_route_answers_with_flinks_fields_and_unknown_ids_are_404_with_a_message() {
    let s = serve(pipeline(None, Some(2000.0)), "127.0.0.1:0", None);
    let id = s.job_id.clone();

    let overview = get(&s, "/overview");
    assert_eq!(overview["jobs-running"], 1);
    assert_eq!(overview["taskmanagers"], 1);
    assert!(overview["slots-total"].as_u64().unwrap() >= 1);
    assert!(get(&s, "/config")["refresh-interval"].is_number());
    assert_eq!(get(&s, "/jobs")["jobs"][0]["id"], id.as_str());
    let jobs = get(&s, "/jobs/overview");
    assert_eq!(jobs["jobs"][0]["jid"], id.as_str());
    assert_eq!(jobs["jobs"][0]["state"], "RUNNING");
    assert_eq!(jobs["jobs"][0]["end-time"], -1);

    let job = get(&s, &format!("/jobs/{id}"));
    assert_eq!(job["name"], "rest test");
    assert_eq!(job["state"], "RUNNING");
    assert!(job["timestamps"]["RUNNING"].is_number());
    let vertices = job["vertices"].as_array().unwrap();
    assert_eq!(vertices.len(), 2, "source chain and keyed chain: {job}");
    assert!(vertices[0]["metrics"]["write-records"].is_number());
    assert_eq!(vertices[1]["parallelism"], 1);

    let plan = get(&s, &format!("/jobs/{id}/plan"));
    let nodes = plan["plan"]["nodes"].as_array().unwrap();
    assert_eq!(nodes[1]["inputs"][0]["ship_strategy"], "HASH");
    assert_eq!(nodes[1]["inputs"][0]["id"], nodes[0]["id"]);

    let config = get(&s, &format!("/jobs/{id}/config"));
    assert_eq!(config["execution-config"]["user-config"]["owner"], "team-streams");
    assert_eq!(config["execution-config"]["job-parallelism"], 1);

    let exceptions = get(&s, &format!("/jobs/{id}/exceptions"));
    assert_eq!(exceptions["exceptionHistory"]["entries"], Value::Array(vec![]));

    let vertex = get(&s, &format!("/jobs/{id}/vertices/1"));
    assert_eq!(vertex["subtasks"][0]["taskmanager-id"], "taskmanager-0");
    for field in ["busyTimeMsPerSecond", "backPressuredTimeMsPerSecond", "idleTimeMsPerSecond"] {
        assert!(vertex["subtasks"][0]["metrics"][field].is_number(), "{field}: {vertex}");
    }
    let watermarks = get(&s, &format!("/jobs/{id}/vertices/0/watermarks"));
    assert_eq!(watermarks[0]["id"], "0.currentOutputWatermark");

    wait_until("three completed checkpoints", || {
        get(&s, &format!("/jobs/{id}/checkpoints"))["counts"]["completed"].as_u64().unwrap() >= 3
    });
    let checkpoints = get(&s, &format!("/jobs/{id}/checkpoints"));
    let latest = &checkpoints["latest"]["completed"];
    assert_eq!(latest["status"], "COMPLETED");
    // Not restored: the job started from scratch and never failed.
    assert_eq!(
        (&checkpoints["counts"]["restored"], &checkpoints["latest"]["restored"]),
        (&json!(0), &Value::Null)
    );
    assert_eq!(latest["num_acknowledged_subtasks"], 2);
    assert!(checkpoints["history"].as_array().unwrap().len() >= 3);
    let cid = latest["id"].as_u64().unwrap();
    let details = get(&s, &format!("/jobs/{id}/checkpoints/details/{cid}"));
    assert_eq!(details["tasks"]["1"]["num_acknowledged_subtasks"], 1);
    assert_eq!(get(&s, &format!("/jobs/{id}/checkpoints/config"))["interval"], 200);

    let tms = get(&s, "/taskmanagers");
    assert_eq!(tms["taskmanagers"][0]["id"], "taskmanager-0");
    assert!(get(&s, "/taskmanagers/taskmanager-0")["slotsNumber"].is_number());
    let openapi = get(&s, "/openapi.json");
    assert_eq!(openapi["openapi"], "3.0.3");

    // Unknown ids: 404 with Flink's error body, naming what was not found.
    for path in [
        "/jobs/0000".to_string(),
        format!("/jobs/{id}/vertices/7"),
        format!("/jobs/{id}/vertices/x/backpressure"),
        format!("/jobs/{id}/checkpoints/details/999999"),
        format!("/jobs/{id}/savepoints/nope"),
        "/taskmanagers/taskmanager-9".to_string(),
        "/no/such/route".to_string(),
    ] {
        let (status, body) = call("GET", &s.url(&path), None, None);
        assert_eq!(status, 404, "{path}: {body}");
        let message = body["errors"][0].as_str().unwrap_or_default();
        assert!(message.contains("not found") || message.contains("Not found"), "{path}: {body}");
    }

    // Savepoint, then its status; then cancel.
    let dir = tempfile::tempdir().unwrap();
    let target = serde_json::json!({ "target-directory": dir.path().to_str().unwrap() });
    let (status, body) =
        call("POST", &s.url(&format!("/jobs/{id}/savepoints")), None, Some(target));
    assert_eq!(status, 202, "{body}");
    let trigger = body["request-id"].as_str().unwrap().to_string();
    let mut location = String::new();
    wait_until("the savepoint", || {
        let status = get(&s, &format!("/jobs/{id}/savepoints/{trigger}"));
        if status["status"]["id"] == "COMPLETED" {
            location = status["operation"]["location"].as_str().unwrap_or_default().to_string();
            return true;
        }
        false
    });
    assert!(std::path::Path::new(&location).join("_metadata").exists(), "{location}");
    let checkpoints = get(&s, &format!("/jobs/{id}/checkpoints"));
    assert_eq!(checkpoints["latest"]["savepoint"]["is_savepoint"], true, "{checkpoints}");
    assert_eq!(checkpoints["latest"]["completed"]["is_savepoint"], false);
    let (status, _) = call("PATCH", &s.url(&format!("/jobs/{id}?mode=cancel")), None, None);
    assert_eq!(status, 202);
    wait_until("the job to cancel", || get(&s, "/jobs/overview")["jobs"][0]["state"] == "CANCELED");
    let (status, body) = call("PATCH", &s.url(&format!("/jobs/{id}")), None, None);
    assert_eq!(status, 409, "cancelling an ended job: {body}");
}

#[test]
fn a_throttled_sink_makes_its_upstream_vertex_high_and_itself_busy() {
    let s = serve(pipeline(Some(2000.0), None), "127.0.0.1:0", None);
    wait_until("the source vertex to be HIGH", || level(&s, 0)["backpressureLevel"] == "high");
    let source = level(&s, 0);
    assert!(source["subtasks"][0]["ratio"].as_f64().unwrap() > 0.5, "{source}");
    let sink = level(&s, 1);
    assert_eq!(sink["backpressureLevel"], "ok", "{sink}");
    assert!(sink["subtasks"][0]["busyRatio"].as_f64().unwrap() > 0.5, "the sink is busy: {sink}");
    // Busy, back-pressured and idle add up to the whole second.
    for v in [&source, &sink] {
        let t = &v["subtasks"][0];
        let sum: f64 =
            ["ratio", "idleRatio", "busyRatio"].iter().map(|f| t[*f].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 0.01, "{t}");
    }
    let (status, body) = call("POST", &s.url(&format!("/jobs/{}/stop", s.job_id)), None, None);
    assert_eq!(status, 202, "{body}");
}

#[test]
fn an_unthrottled_job_that_keeps_up_is_ok_everywhere() {
    let s = serve(pipeline(None, Some(1000.0)), "127.0.0.1:0", None);
    wait_until("rates sampled", || {
        level(&s, 1)["subtasks"][0]["idleRatio"].as_f64().unwrap() > 0.5
    });
    for vertex in [0, 1] {
        let l = level(&s, vertex);
        assert_eq!(l["backpressureLevel"], "ok", "vertex {vertex}: {l}");
    }
}

#[test]
fn metrics_parse_as_prometheus_text_with_per_subtask_figures() {
    let s = serve(pipeline(Some(5000.0), None), "127.0.0.1:0", None);
    wait_until("a completed checkpoint", || {
        get(&s, &format!("/jobs/{}/checkpoints", s.job_id))["counts"]["completed"].as_u64().unwrap()
            >= 1
    });
    std::thread::sleep(Duration::from_millis(1100)); // one sampling interval
    let (status, body) = call("GET", &s.url("/metrics"), None, None);
    assert_eq!(status, 200);
    let text = body.as_str().expect("text").to_string();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let sample = |name: &str, vertex_prefix: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.get("vertex").is_some_and(|v| v.starts_with(vertex_prefix))
            })
            .unwrap_or_else(|| panic!("{name} for {vertex_prefix}: {text}"))
            .clone()
    };
    let value = |s: &prometheus_parse::Sample| match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("a scalar"),
    };
    assert!(value(&sample("sluice_task_records_out_total", "Source")) > 0.0);
    let source_bp = value(&sample("sluice_task_back_pressured_time_ms_per_second", "Source"));
    assert!(source_bp > 500.0, "the source waits for credit: {source_bp}");
    assert_eq!(sample("sluice_task_records_in_total", "Keyed").labels.get("subtask"), Some("0"));
    let checkpoints = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "sluice_job_checkpoints_total"
                && s.labels.get("status") == Some("COMPLETED")
        })
        .expect("checkpoint counter");
    assert!(value(checkpoints) >= 1.0);
    assert!(scrape.samples.iter().any(|s| s.metric == "sluice_job_last_checkpoint_duration_ms"));
    assert!(scrape.samples.iter().any(|s| s.metric == "sluice_job_restarts_total"));
}

/// Every GET route of the API and UI, with ids of the served job.
fn every_route(s: &Served) -> Vec<String> {
    let id = &s.job_id;
    let mut routes: Vec<String> = serde_json::from_str::<Value>(include_str!("../openapi.json"))
        .unwrap()["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| {
            p.replace("{id}", id)
                .replace("{vertex}", "0")
                .replace("{checkpoint}", "1")
                .replace("{trigger}", "x")
                .replace("{tm}", "taskmanager-0")
        })
        .collect();
    for ui in ["/", "/favicon.ico", "/ui/taskmanagers"] {
        routes.push(ui.to_string());
    }
    for page in ["", "/checkpoints", "/checkpoints/1", "/exceptions", "/config"] {
        routes.push(format!("/ui/jobs/{id}{page}"));
    }
    routes
}

#[test]
fn off_loopback_every_route_needs_the_token_and_no_token_means_no_start() {
    let refused = RestServer::start(
        RestConfig { address: "0.0.0.0:0".parse().unwrap(), token: None },
        Dashboard::new(),
    );
    let message = refused.err().expect("no token, no start").to_string();
    assert!(message.contains("not loopback") && message.contains("--rest-token"), "{message}");

    let token = "s3cret-token";
    let s = serve(pipeline(None, Some(500.0)), "0.0.0.0:0", Some(token));
    let port = s.server.address().port();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    for route in every_route(&s) {
        let (status, body) = call("GET", &url(&route), None, None);
        assert_eq!(status, 401, "GET {route} without the token: {body}");
        let (status, _) = call("GET", &url(&route), Some("wrong"), None);
        assert_eq!(status, 401, "GET {route} with a wrong token");
        let (status, body) = call("GET", &url(&route), Some(token), None);
        assert_ne!(status, 401, "GET {route} with the token: {body}");
    }
    let (status, _) = call("PATCH", &url(&format!("/jobs/{}", s.job_id)), None, None);
    assert_eq!(status, 401, "cancel without the token");
    let (status, _) = call("POST", &url(&format!("/jobs/{}/stop", s.job_id)), None, None);
    assert_eq!(status, 401, "stop without the token");
    assert_eq!(
        call("GET", &url("/jobs/overview"), Some(token), None).1["jobs"][0]["state"],
        "RUNNING"
    );
}

#[test]
fn path_traversal_payloads_of_flinks_rest_cves_are_refused() {
    let s = serve(pipeline(None, Some(500.0)), "127.0.0.1:0", None);
    // CVE-2020-17519: reading any file through the JobManager's log route.
    for path in [
        "/jobmanager/logs/..%252f..%252f..%252f..%252f..%252fetc%252fpasswd",
        "/jobmanager/logs/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/jobs/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/ui/jobs/..%2f..%2fetc%2fpasswd",
        "/static/../../../../etc/passwd",
        "/taskmanagers/..%252f..%252fetc%252fpasswd",
    ] {
        let (status, body) = call("GET", &s.url(path), None, None);
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        assert!(!body.to_string().contains("root:"), "{path} leaked a file: {body}");
    }
    // CVE-2020-17518: writing a file through an upload with a traversing name.
    let marker = std::env::temp_dir().join(format!("sluice-cve-17518-{}", std::process::id()));
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"../../../../../../{}\"\r\nContent-Type: application/octet-stream\r\n\r\npwned\r\n--b--\r\n",
        marker.display()
    );
    let mut response = agent()
        .post(&s.url("/jars/upload"))
        .header("Content-Type", "multipart/form-data; boundary=b")
        .send(body.as_bytes())
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        404,
        "{}",
        response.body_mut().read_to_string().unwrap()
    );
    assert!(!marker.exists(), "no upload route writes anything");
}
