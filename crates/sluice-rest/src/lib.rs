//! The JobManager's REST API (Flink's paths and JSON field names), its web
//! UI (rendered on the server) and Prometheus metrics, served by axum on a
//! thread of their own.
//!
//! Secure by default: it binds to loopback unless told otherwise, and bound
//! to any other interface it refuses to start without a bearer token, which
//! every route then requires. Nothing serves files or takes a path from a
//! request.

// Handlers return axum's `Response` as their error, the way axum means it;
// it is built once per failed request, never on a hot path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use sluice_cluster::JobView;
use sluice_core::{Result, SluiceError};

mod api;
mod prometheus;
pub mod rates;
mod ui;

pub use rates::{BackPressureLevel, RateSampler, SubtaskRates};

/// The environment variable that holds the REST token when no flag does.
pub const TOKEN_ENV: &str = "SLUICE_REST_TOKEN";

/// Where and how the REST API is served.
#[derive(Clone, Debug)]
pub struct RestConfig {
    /// The address to bind; loopback unless a user names another interface.
    pub address: SocketAddr,
    /// The bearer token every request must carry; required off loopback.
    pub token: Option<String>,
}

/// A savepoint asked for through the API, by its request id.
#[derive(Clone, Debug)]
enum SavepointTrigger {
    InProgress,
    Completed(String),
    Failed(String),
}

/// What the REST API shows: the JobManager's jobs and their sampled rates.
#[derive(Default)]
pub struct Dashboard {
    jobs: Mutex<Vec<JobView>>,
    rates: Mutex<RateSampler>,
    savepoints: Mutex<HashMap<String, SavepointTrigger>>,
    started: Mutex<Option<Instant>>,
}

impl Dashboard {
    /// An empty dashboard.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Shows a job (submitted to this JobManager).
    pub fn register(&self, job: JobView) {
        self.jobs.lock().expect("jobs lock").push(job);
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<JobView> {
        self.jobs.lock().expect("jobs lock").clone()
    }

    /// The job with id `id`.
    fn job(&self, id: &str) -> Option<JobView> {
        self.jobs.lock().expect("jobs lock").iter().find(|j| j.job_id() == id).cloned()
    }

    /// The rates of one subtask (zeros until it was sampled twice).
    pub fn rates(&self, job_id: &str, vertex: usize, subtask: usize) -> SubtaskRates {
        self.rates.lock().expect("rates lock").rates(job_id, vertex, subtask).unwrap_or_default()
    }

    /// Samples every running job's counters; the rates are per second between samples.
    pub fn sample(&self) {
        let now = Instant::now();
        let mut sampler = self.rates.lock().expect("rates lock");
        for job in self.jobs() {
            if job.status().is_terminal() {
                continue;
            }
            let subtasks: Vec<_> =
                job.subtask_metrics().iter().map(|(v, s, m)| (*v, *s, &**m)).collect();
            sampler.sample(job.job_id(), &subtasks, now);
        }
    }
}

/// A running REST server.
pub struct RestServer {
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RestServer {
    /// Binds `config.address` and serves `dashboard` on a thread of its own.
    /// Off loopback, a token is required; the error says how to give one.
    pub fn start(config: RestConfig, dashboard: Arc<Dashboard>) -> Result<Self> {
        let token = config.token.filter(|t| !t.is_empty());
        if !config.address.ip().is_loopback() && token.is_none() {
            return Err(SluiceError::Config(format!(
                "the REST API would listen on {}, which is not loopback, without a token: \
                 give one with --rest-token or {TOKEN_ENV} (every request must then carry \
                 'Authorization: Bearer TOKEN')",
                config.address
            )));
        }
        let listener = TcpListener::bind(config.address).map_err(|e| {
            SluiceError::Config(format!(
                "cannot listen on {} for the REST API: {e}",
                config.address
            ))
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| SluiceError::Internal(format!("REST listener: {e}")))?;
        let address = listener.local_addr().map_err(|e| SluiceError::Internal(e.to_string()))?;
        *dashboard.started.lock().expect("start lock") = Some(Instant::now());
        let app = router(dashboard.clone(), token);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rest".into())
            .spawn(move || serve(listener, app, dashboard, stop))
            .map_err(|e| SluiceError::Internal(format!("cannot start the REST thread: {e}")))?;
        Ok(Self { address, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The web UI's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: TcpListener,
    app: Router,
    dashboard: Arc<Dashboard>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return tracing::error!("cannot start the REST runtime: {e}"),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!("REST listener: {e}"),
        };
        // Rates are per second: sample every running job once a second.
        let sampler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                dashboard.sample();
            }
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await;
        sampler.abort();
        if let Err(e) = served {
            tracing::error!("the REST API stopped: {e}");
        }
    });
}

/// Every route: the REST API, `/metrics`, and the UI.
fn router(dashboard: Arc<Dashboard>, token: Option<String>) -> Router {
    let routes = api::routes()
        .merge(ui::routes())
        .route("/metrics", axum::routing::get(prometheus::metrics))
        .fallback(not_found)
        .with_state(dashboard);
    match token {
        Some(token) => {
            routes.layer(axum::middleware::from_fn_with_state(Arc::new(token), authorize))
        }
        None => routes,
    }
}

async fn not_found(request: Request) -> Response {
    api::error(StatusCode::NOT_FOUND, format!("Not found: {}", request.uri().path()))
}

/// The cookie the UI keeps the token in after `/?token=…`.
const TOKEN_COOKIE: &str = "sluice_token";

/// Lets a request through only with the token: as a bearer token, in the
/// UI's cookie, or once as `?token=` (which sets the cookie and redirects).
async fn authorize(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if bearer(headers).is_some_and(|t| same(t, &token))
        || cookie(headers, TOKEN_COOKIE).is_some_and(|t| same(t, &token))
    {
        return next.run(request).await;
    }
    let query_token =
        request.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    if query_token.is_some_and(|t| same(t, &token)) {
        let cookie = format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
        let mut response = Redirect::to(request.uri().path()).into_response();
        if let Ok(value) = cookie.parse() {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return response;
    }
    let mut response = api::error(
        StatusCode::UNAUTHORIZED,
        "this REST API needs a token: send 'Authorization: Bearer TOKEN' (or open /?token=TOKEN in a browser)".into(),
    );
    response.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("header"));
    response
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Compares in time independent of where the strings differ.
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}
