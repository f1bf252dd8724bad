//! The HTTP layer under each watch stream's client: it notes what the stream hears from the
//! API server in the stream's [`StreamHealth`], and fails a request that hears nothing at all
//! for the idle timeout (`source.kubernetes.watch_idle_timeout_ms`).
//!
//! The silence is measured on bytes: from the request to its answer's headers, then between
//! any two frames of the answer's body. A watch that stays connected but sends nothing (no
//! event, no bookmark: a half-open connection after a load balancer failover) fails with
//! [`Silence`]; kube-runtime's watcher then resumes it from its last resourceVersion (relisting
//! only if the API answers 410). kube-runtime's own guard (the server-side timeout plus 5 s)
//! would take five minutes.
//!
//! Invariants: only bytes of a successful (2xx) answer count as heard; a watch is established
//! when its request is answered 2xx; `Retry-After` (in seconds, on a 429 or 503) is passed to
//! the retry policy through the health record; a body that went silent ends after its error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tower::{BoxError, Layer, Service};

use super::health::StreamHealth;

/// Nothing at all arrived on a request for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error(
    "nothing heard from the API server for {} ms (source.kubernetes.watch_idle_timeout_ms)",
    .0.as_millis()
)]
pub struct Silence(pub Duration);

/// Wraps a client's service stack with [`Observed`].
#[derive(Clone, Debug)]
pub struct Observe {
    health: Arc<StreamHealth>,
    idle: Duration,
}

impl Observe {
    /// Notes into `health`; fails requests silent for `idle`.
    pub fn new(health: Arc<StreamHealth>, idle: Duration) -> Self {
        Self { health, idle }
    }
}

impl<S> Layer<S> for Observe {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            health: self.health.clone(),
            idle: self.idle,
        }
    }
}

/// A service whose answers are watched for silence and noted in a stream's health.
#[derive(Clone, Debug)]
pub struct Observed<S> {
    inner: S,
    health: Arc<StreamHealth>,
    idle: Duration,
}

type Answer<B> = Pin<Box<dyn Future<Output = Result<Response<Heard<B>>, BoxError>> + Send>>;

impl<S, RequestBody, AnswerBody> Service<Request<RequestBody>> for Observed<S>
where
    S: Service<Request<RequestBody>, Response = Response<AnswerBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    AnswerBody: Body<Data = Bytes> + Unpin + Send + 'static,
{
    type Response = Response<Heard<AnswerBody>>;
    type Error = BoxError;
    type Future = Answer<AnswerBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let watch = is_watch(request.uri());
        let health = self.health.clone();
        let idle = self.idle;
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = match tokio::time::timeout(idle, answer).await {
                Ok(response) => response.map_err(Into::into)?,
                Err(_) => {
                    health.silenced();
                    return Err(Box::new(Silence(idle)) as BoxError);
                }
            };
            if let Some(pause) = retry_after(&response) {
                health.server_asked(pause);
            }
            let success = response.status().is_success();
            if success && watch {
                health.established();
            }
            Ok(response.map(|body| Heard {
                inner: body,
                health,
                idle,
                deadline: Box::pin(tokio::time::sleep(idle)),
                success,
                silent: false,
            }))
        })
    }
}

/// An answer's body, timed between frames; its frames count as heard when the answer is 2xx.
#[derive(Debug)]
pub struct Heard<B> {
    inner: B,
    health: Arc<StreamHealth>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    success: bool,
    silent: bool,
}

impl<B> Body for Heard<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.silent {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.success {
                    this.health.heard();
                }
                this.deadline.as_mut().reset(Instant::now() + this.idle);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.silent = true;
                    this.health.silenced();
                    Poll::Ready(Some(Err(Box::new(Silence(this.idle)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.silent || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a request is a watch (`watch=true` or `watch=1` in its query).
fn is_watch(uri: &Uri) -> bool {
    uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    })
}

/// The pause a 429 or 503 answer asks for, in whole seconds (`Retry-After: 3`). The HTTP-date
/// form is not used by Kubernetes API servers and is ignored.
fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    let status = response.status();
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = response.headers().get(http::header::RETRY_AFTER)?;
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kubernetes::health::WatchState;
    use crate::source::kubernetes::{StreamScope, WatchedKind};
    use futures::channel::{mpsc, oneshot};
    use http_body_util::{BodyExt, StreamBody};

    type TestBody = StreamBody<mpsc::UnboundedReceiver<Result<Frame<Bytes>, BoxError>>>;

    /// A server whose one answer the test hands over through a channel.
    struct Answering(Option<oneshot::Receiver<Response<TestBody>>>);

    impl Service<Request<()>> for Answering {
        type Response = Response<TestBody>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let answer = self.0.take().expect("one request");
            Box::pin(async move { answer.await.map_err(|e| Box::new(e) as BoxError) })
        }
    }

    const IDLE: Duration = Duration::from_secs(5);

    fn health() -> Arc<StreamHealth> {
        Arc::new(StreamHealth::new(StreamScope {
            kind: WatchedKind::EndpointSlices,
            namespace: Some("db".into()),
        }))
    }

    fn request(query: &str) -> Request<()> {
        Request::get(format!("/api/v1/services?{query}"))
            .body(())
            .unwrap()
    }

    fn observed(
        health: &Arc<StreamHealth>,
    ) -> (Observed<Answering>, oneshot::Sender<Response<TestBody>>) {
        let (answer, answered) = oneshot::channel();
        let service = Observe::new(health.clone(), IDLE).layer(Answering(Some(answered)));
        (service, answer)
    }

    fn body() -> (
        mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>,
        TestBody,
    ) {
        let (frames, body) = mpsc::unbounded();
        (frames, StreamBody::new(body))
    }

    fn frame(text: &'static str) -> Result<Frame<Bytes>, BoxError> {
        Ok(Frame::data(Bytes::from_static(text.as_bytes())))
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_is_established_heard_per_frame_and_failed_after_silence() {
        let health = health();
        let (mut service, answer) = observed(&health);
        let (frames, body) = body();
        let _ = answer.send(Response::new(body));
        let response = service.call(request("watch=true&timeoutSeconds=290")).await;
        let mut body = response.unwrap().into_body();
        assert_eq!(health.state(), WatchState::Watching);
        frames
            .unbounded_send(frame("{\"type\":\"BOOKMARK\"}\n"))
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert_eq!(health.heard_count(), 1);
        // Nearly the idle timeout, then a frame: the clock starts again.
        tokio::time::sleep(IDLE - Duration::from_millis(10)).await;
        frames
            .unbounded_send(frame("{\"type\":\"ADDED\"}\n"))
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert_eq!(health.heard_count(), 2);
        let started = Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), IDLE);
        assert!(error.is::<Silence>(), "{error}");
        assert_eq!(health.state(), WatchState::Stalled);
        assert!(health.take_silence());
        assert!(body.frame().await.is_none(), "a silent body ends");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_never_comes_is_silence() {
        let health = health();
        let (mut service, _answer) = observed(&health);
        let error = service.call(request("limit=500")).await.unwrap_err();
        assert!(error.is::<Silence>(), "{error}");
        assert!(health.take_silence());
    }

    #[tokio::test(start_paused = true)]
    async fn error_answers_are_not_heard_and_their_retry_after_is_passed_on() {
        let health = health();
        let (mut service, answer) = observed(&health);
        let (frames, body) = body();
        let mut throttled = Response::new(body);
        *throttled.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        throttled
            .headers_mut()
            .insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        let _ = answer.send(throttled);
        let response = service.call(request("watch=true")).await.unwrap();
        assert_eq!(health.state(), WatchState::Listing, "not established");
        frames
            .unbounded_send(frame("{\"kind\":\"Status\"}"))
            .unwrap();
        drop(frames);
        let collected = response.into_body().collect().await.unwrap();
        assert!(!collected.to_bytes().is_empty());
        assert_eq!(health.heard_count(), 0);
        assert_eq!(health.take_server_asked(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn watches_and_retry_after_are_read_from_the_request_and_answer() {
        let uri = |q: &str| format!("/api/v1/services?{q}").parse::<Uri>().unwrap();
        assert!(is_watch(&uri("allowWatchBookmarks=true&watch=true")));
        assert!(is_watch(&uri("watch=1")));
        assert!(!is_watch(&uri("limit=500")));
        assert!(!is_watch(&uri("watch=false")));
        let answer = |status: u16, value: &str| {
            let mut response = Response::new(());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value.parse().unwrap());
            retry_after(&response)
        };
        assert_eq!(answer(503, "2"), Some(Duration::from_secs(2)));
        assert_eq!(answer(429, " 1 "), Some(Duration::from_secs(1)));
        assert_eq!(answer(500, "2"), None);
        assert_eq!(answer(429, "Wed, 21 Oct 2026 07:28:00 GMT"), None);
    }
}
