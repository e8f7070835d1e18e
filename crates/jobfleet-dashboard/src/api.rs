//! The HTTP routes: the page and its embedded assets, the live stream, job
//! detail and cancel, pausing and browsing queues, dead letters, schedules,
//! `/metrics` and `/healthz`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use jobfleet_core::schedule::validate_schedule_name;
use jobfleet_core::{CancelOutcome, Client, Error, JobState, ScheduleState};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::guard::{self, Guard};
use crate::hub::{Hub, Push};
use crate::prometheus::Exporter;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// The dead letters a page lists at most.
const DEAD_LIST_MAX: usize = 1000;

/// The jobs one browse lists unless told otherwise, and at most.
const BROWSE_DEFAULT: usize = 50;
const BROWSE_MAX: usize = 1000;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub client: Client,
    pub hub: Arc<Hub>,
    pub exporter: Arc<Exporter>,
    /// Cancelled on shutdown: open streams end so the server can drain.
    pub stop: CancellationToken,
    /// The page, with the token in its asset URLs when one is set.
    pub index: Arc<str>,
    pub guard: Arc<Guard>,
    /// One permit per open live stream: each holds a connection and a
    /// broadcast receiver, so a script or a pile of tabs could exhaust both.
    pub streams: Arc<Semaphore>,
    /// The permits `streams` started with, for the refusal.
    pub max_streams: usize,
}

/// Every route, behind the guard.
pub(crate) fn router(state: AppState) -> Router {
    let guard = state.guard.clone();
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(|| asset("text/javascript; charset=utf-8", APP_JS)))
        .route("/app.css", get(|| asset("text/css; charset=utf-8", APP_CSS)))
        .route("/api/stream", get(stream))
        .route("/api/stats", get(stats))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .route("/api/queues/{queue}/pause", post(pause))
        .route("/api/queues/{queue}/resume", post(resume))
        .route("/api/queues/{queue}/jobs", get(browse))
        .route("/api/queues/{queue}/dead", get(dead_list))
        .route("/api/queues/{queue}/dead/retry", post(dead_retry))
        .route("/api/queues/{queue}/dead/purge", post(dead_purge))
        .route("/api/schedules", get(schedules))
        .route("/api/queues/{queue}/schedules/{name}/pause", post(schedule_pause))
        .route(
            "/api/queues/{queue}/schedules/{name}/resume",
            post(schedule_resume),
        )
        .route(
            "/api/queues/{queue}/schedules/{name}/remove",
            post(schedule_remove),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such page".into()) })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
}

/// The page's HTML. The browser fetches its script and style sheet itself,
/// so when a token is required their URLs must carry it.
pub(crate) fn index_html(token: Option<&str>) -> String {
    let query = match token {
        Some(token) => format!(
            "?token={}",
            form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        ),
        None => String::new(),
    };
    // Percent-encoded, the query holds no character HTML would interpret.
    INDEX_HTML.replace("{{asset_query}}", &query)
}

async fn index(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        state.index.to_string(),
    )
        .into_response()
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// One page's live stream.
struct PageStream {
    /// Sent first, then `None`.
    snapshot: Option<Push>,
    rx: broadcast::Receiver<Push>,
    stop: CancellationToken,
    /// Its place among the bounded streams, freed when the stream is
    /// dropped: the page went away, or the dashboard is stopping.
    _place: OwnedSemaphorePermit,
}

/// The live stream: a snapshot (latest stats, throughput history, recent
/// events), then every `stats`, `events` and `resync` message as it comes.
/// Refused with 503 while `max_streams` are open.
async fn stream(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let place = state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many live streams: this dashboard serves at most {} at once; close other \
                 dashboard pages, or start it with a higher --max-streams",
                state.max_streams
            ),
        )
    })?;
    let (rx, snapshot) = state.hub.join();
    let page = PageStream {
        snapshot: Some(snapshot),
        rx,
        stop: state.stop.clone(),
        _place: place,
    };
    let stream = futures_util::stream::unfold(page, |mut page| async move {
        if let Some(push) = page.snapshot.take() {
            return Some((sse(&push), page));
        }
        let push = tokio::select! {
            next = page.rx.recv() => match next {
                Ok(push) => push,
                // This page fell behind: it gets the next message, and
                // the next stats tick brings it up to date.
                Err(RecvError::Lagged(n)) => Push {
                    kind: "lagged",
                    data: Arc::from(json!({ "skipped": n }).to_string()),
                },
                Err(RecvError::Closed) => return None,
            },
            _ = page.stop.cancelled() => return None,
        };
        Some((sse(&push), page))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse(push: &Push) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().event(push.kind).data(&*push.data))
}

/// A failure as a JSON `{"error": …}` response.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::JobNotFound(_) => StatusCode::NOT_FOUND,
            // Pausing or resuming a schedule that does not exist.
            Error::InvalidSchedule(why) if why.starts_with("no schedule") => StatusCode::NOT_FOUND,
            Error::AmbiguousJob { .. } => StatusCode::CONFLICT,
            Error::InvalidJobId(_)
            | Error::InvalidQueueName(_)
            | Error::InvalidTaskName(_)
            | Error::InvalidSchedule(_)
            | Error::NotBrowsable(_) => StatusCode::BAD_REQUEST,
            Error::Redis(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

async fn stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.client.stats(&[]).await?).into_response())
}

#[derive(Debug, Deserialize)]
struct InQueue {
    queue: Option<String>,
}

async fn job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<InQueue>,
) -> Result<Response, ApiError> {
    Ok(Json(state.client.find_job(&id, q.queue.as_deref()).await?).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<InQueue>,
) -> Result<Response, ApiError> {
    let queue = match q.queue {
        Some(queue) => queue,
        None => state.client.find_job(&id, None).await?.queue,
    };
    let outcome = state.client.queue(&queue)?.cancel(&id).await?;
    let body = match outcome {
        CancelOutcome::Cancelled => json!({ "outcome": "cancelled" }),
        CancelOutcome::Cancelling => json!({ "outcome": "cancelling" }),
        CancelOutcome::AlreadyFinal(s) => json!({ "outcome": "already_final", "state": s }),
        CancelOutcome::NotFound => return Err(Error::JobNotFound(id).into()),
    };
    Ok(Json(body).into_response())
}

/// `{"paused": true, "changed": false}` when it was paused already.
async fn pause(State(state): State<AppState>, Path(queue): Path<String>) -> Result<Response, ApiError> {
    let changed = state.client.queue(&queue)?.pause().await?;
    Ok(Json(json!({ "paused": true, "changed": changed })).into_response())
}

/// `{"paused": false, "changed": false}` when it was not paused.
async fn resume(State(state): State<AppState>, Path(queue): Path<String>) -> Result<Response, ApiError> {
    let changed = state.client.queue(&queue)?.resume().await?;
    Ok(Json(json!({ "paused": false, "changed": changed })).into_response())
}

/// Which of a queue's jobs to list.
#[derive(Debug, Deserialize)]
struct Browse {
    /// pending (the default), scheduled, active or dead.
    state: Option<String>,
    /// Only this task's jobs; empty (as a blank form field sends it) is any.
    task: Option<String>,
    limit: Option<usize>,
}

/// A queue's jobs in one state, in the order `Queue::jobs` gives them.
async fn browse(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Query(q): Query<Browse>,
) -> Result<Response, ApiError> {
    let name = q.state.as_deref().unwrap_or("pending");
    let Some(job_state) = JobState::parse(name) else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown state {name:?}: give pending, scheduled, active or dead"),
        ));
    };
    let task = q.task.as_deref().filter(|t| !t.is_empty());
    let limit = q.limit.unwrap_or(BROWSE_DEFAULT).clamp(1, BROWSE_MAX);
    let jobs = state.client.queue(&queue)?.jobs(job_state, task, limit).await?;
    Ok(Json(jobs).into_response())
}

#[derive(Debug, Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn dead_list(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Query(q): Query<Limit>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, DEAD_LIST_MAX);
    Ok(Json(state.client.queue(&queue)?.dead_list(limit).await?).into_response())
}

/// Which dead jobs an action is for: the listed ids, or every one with
/// `"all": true` (an empty list alone is refused, so a bug in a caller never
/// empties the dead set).
#[derive(Debug, Deserialize)]
struct DeadSelection {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
}

impl DeadSelection {
    fn ids(self) -> Result<Vec<String>, ApiError> {
        match (self.all, self.ids.is_empty()) {
            (true, true) => Ok(Vec::new()),
            (false, false) => {
                for id in &self.ids {
                    jobfleet_core::validate_job_id(id)?;
                }
                Ok(self.ids)
            }
            (true, false) => Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give ids or all, not both".into(),
            )),
            (false, true) => Err(ApiError(StatusCode::BAD_REQUEST, "give ids, or all: true".into())),
        }
    }
}

async fn dead_retry(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Json(selection): Json<DeadSelection>,
) -> Result<Response, ApiError> {
    let ids = selection.ids()?;
    let retried = state.client.queue(&queue)?.dead_retry(&ids).await?;
    Ok(Json(json!({ "retried": retried })).into_response())
}

async fn dead_purge(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Json(selection): Json<DeadSelection>,
) -> Result<Response, ApiError> {
    let ids = selection.ids()?;
    let purged = state.client.queue(&queue)?.dead_purge(&ids).await?;
    Ok(Json(json!({ "purged": purged })).into_response())
}

/// A schedule for the page: its state, and when it fires as the CLI says it
/// (`every 30s`, `cron "*/5 * * * *" (Europe/Paris)`).
#[derive(Debug, Serialize)]
struct ScheduleView {
    #[serde(flatten)]
    state: ScheduleState,
    describe: String,
}

/// Every known queue's schedules, by queue then name.
async fn schedules(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut all = Vec::new();
    for name in state.client.queue_names().await? {
        for schedule in state.client.queue(&name)?.schedules().await? {
            all.push(ScheduleView {
                describe: schedule.schedule.when.describe(),
                state: schedule,
            });
        }
    }
    Ok(Json(all).into_response())
}

/// `{"paused": true, "changed": false}` when it was paused already; 404 when
/// there is no such schedule.
async fn schedule_pause(
    State(state): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    validate_schedule_name(&name)?;
    let changed = state
        .client
        .queue(&queue)?
        .schedule_set_paused(&name, true)
        .await?;
    Ok(Json(json!({ "paused": true, "changed": changed })).into_response())
}

/// `{"paused": false, "changed": false}` when it was not paused; it goes on
/// from its next tick after now.
async fn schedule_resume(
    State(state): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    validate_schedule_name(&name)?;
    let changed = state
        .client
        .queue(&queue)?
        .schedule_set_paused(&name, false)
        .await?;
    Ok(Json(json!({ "paused": false, "changed": changed })).into_response())
}

/// `{"removed": true}`; the jobs it submitted stay. 404 when there was none.
async fn schedule_remove(
    State(state): State<AppState>,
    Path((queue, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    validate_schedule_name(&name)?;
    if !state.client.queue(&queue)?.schedule_remove(&name).await? {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no schedule {name} in queue {queue}"),
        ));
    }
    Ok(Json(json!({ "removed": true })).into_response())
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let stats = state.client.stats(&[]).await?;
    let text = state.exporter.render(&stats);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

/// 200 when Redis answers, 503 when it does not.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.client.redis_time_ms().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("redis unreachable: {e}\n"),
        )
            .into_response(),
    }
}
