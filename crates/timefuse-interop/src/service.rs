//! `grpc.testing.TestService`, served under each request's [`Context`](timefuse::Context).
//!
//! Every handler takes the context the ingress built, records what it saw in the
//! [`CallLog`], and does its waiting (sleeps, stream intervals, reading the client's stream)
//! under [`Context::run`](timefuse::Context::run), so the work stops when the budget ends or the
//! client goes away. Streaming responses are produced by a task spawned under the call's
//! context, since a response stream is polled after the handler has returned.
//!
//! A unary call sleeps before answering when it carries the metadata key
//! [`SLEEP_MS_KEY`] (`x-timefuse-sleep-ms`) with a number of milliseconds: the interop spec's
//! "sleeping server" for unary calls.

use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::log::{Call, CallLog};
use crate::pb::test_service_server::TestService;
use crate::pb::{
    EchoStatus, Empty, Payload, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};

/// Metadata key: a unary call carrying it sleeps this many milliseconds (under its context)
/// before answering.
pub const SLEEP_MS_KEY: &str = "x-timefuse-sleep-ms";

/// The largest payload the server builds, whatever the client asks for.
const MAX_PAYLOAD: usize = 4 << 20;

/// A response stream of the service.
pub type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<StreamingOutputCallResponse, Status>> + Send + 'static>>;

/// The interop `TestService`: answers as the gRPC interop spec asks and logs each call's
/// context in a [`CallLog`].
#[derive(Debug, Clone, Default)]
pub struct InteropService {
    log: CallLog,
}

impl InteropService {
    /// A service that records its calls in `log`.
    pub fn new(log: CallLog) -> Self {
        InteropService { log }
    }

    /// The log of the calls handled so far.
    pub fn log(&self) -> &CallLog {
        &self.log
    }
}

fn payload(size: i32) -> Payload {
    let size = usize::try_from(size).unwrap_or(0).min(MAX_PAYLOAD);
    Payload {
        r#type: 0,
        body: vec![0; size],
    }
}

/// The status a client asked for with `response_status`, if any other than OK.
fn echo_status(status: Option<&EchoStatus>) -> Option<Status> {
    let s = status?;
    (s.code != 0).then(|| Status::new(tonic::Code::from(s.code), s.message.clone()))
}

fn sleep_ms<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get(SLEEP_MS_KEY)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_millis)
}

/// Sends one response per `params` entry, each after its interval; false once the client's
/// side of the stream is gone.
async fn send_responses(
    tx: &mpsc::Sender<Result<StreamingOutputCallResponse, Status>>,
    params: &[ResponseParameters],
) -> bool {
    for p in params {
        if p.interval_us > 0 {
            let us = u64::try_from(p.interval_us).unwrap_or(0);
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        let msg = StreamingOutputCallResponse {
            payload: Some(payload(p.size)),
        };
        if tx.send(Ok(msg)).await.is_err() {
            return false;
        }
    }
    true
}

/// Runs `work` under the call's context in a task of its own, feeding the returned stream, and
/// records how it ended.
fn spawn_stream<F, Fut>(call: Call, work: F) -> ResponseStream
where
    F: FnOnce(mpsc::Sender<Result<StreamingOutputCallResponse, Status>>) -> Fut,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    let fut = work(tx.clone());
    let ctx = call.ctx.clone();
    tokio::spawn(ctx.scope(async move {
        match call.ctx.run(fut).await {
            Ok(Ok(())) => call.finish("ok"),
            Ok(Err(status)) => {
                call.finish(format!("error: {:?}", status.code()));
                let _ = tx.send(Err(status)).await;
            }
            Err(cause) => {
                let status = call.interrupted(&cause);
                let _ = tx.send(Err(status)).await;
            }
        }
    }));
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl TestService for InteropService {
    async fn empty_call(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        let call = self.log.begin("EmptyCall", &request);
        call.finish("ok");
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let call = self.log.begin("UnaryCall", &request);
        if let Some(d) = sleep_ms(&request)
            && let Err(cause) = call.ctx.run(tokio::time::sleep(d)).await
        {
            return Err(call.interrupted(&cause));
        }
        let req = request.into_inner();
        if let Some(status) = echo_status(req.response_status.as_ref()) {
            call.finish(format!("error: {:?}", status.code()));
            return Err(status);
        }
        call.finish("ok");
        Ok(Response::new(SimpleResponse {
            payload: Some(payload(req.response_size)),
            server_id: if req.fill_server_id {
                "timefuse-interop".to_owned()
            } else {
                String::new()
            },
            ..SimpleResponse::default()
        }))
    }

    type StreamingOutputCallStream = ResponseStream;

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        let call = self.log.begin("StreamingOutputCall", &request);
        let req = request.into_inner();
        Ok(Response::new(spawn_stream(call, |tx| async move {
            if send_responses(&tx, &req.response_parameters).await
                && let Some(status) = echo_status(req.response_status.as_ref())
            {
                return Err(status);
            }
            Ok(())
        })))
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let call = self.log.begin("StreamingInputCall", &request);
        let mut inbound = request.into_inner();
        let read_all = async {
            let mut total = 0usize;
            while let Some(msg) = inbound.message().await? {
                total += msg.payload.map_or(0, |p| p.body.len());
            }
            Ok::<_, Status>(total)
        };
        match call.ctx.run(read_all).await {
            Ok(Ok(total)) => {
                call.finish("ok");
                Ok(Response::new(StreamingInputCallResponse {
                    aggregated_payload_size: i32::try_from(total).unwrap_or(i32::MAX),
                }))
            }
            Ok(Err(status)) => {
                call.finish(format!("error: {:?}", status.code()));
                Err(status)
            }
            Err(cause) => Err(call.interrupted(&cause)),
        }
    }

    type FullDuplexCallStream = ResponseStream;

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::FullDuplexCallStream>, Status> {
        let call = self.log.begin("FullDuplexCall", &request);
        let mut inbound = request.into_inner();
        Ok(Response::new(spawn_stream(call, |tx| async move {
            // Waiting for the client's next message is the "sleeping server" of the spec.
            while let Some(req) = inbound.message().await? {
                if !send_responses(&tx, &req.response_parameters).await {
                    return Ok(());
                }
                if let Some(status) = echo_status(req.response_status.as_ref()) {
                    return Err(status);
                }
            }
            Ok(())
        })))
    }

    type HalfDuplexCallStream = ResponseStream;

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::HalfDuplexCallStream>, Status> {
        let call = self.log.begin("HalfDuplexCall", &request);
        let mut inbound = request.into_inner();
        Ok(Response::new(spawn_stream(call, |tx| async move {
            let mut buffered = Vec::new();
            while let Some(req) = inbound.message().await? {
                buffered.push(req);
            }
            for req in buffered {
                if !send_responses(&tx, &req.response_parameters).await {
                    break;
                }
            }
            Ok(())
        })))
    }

    async fn unimplemented_method(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        let call = self.log.begin("UnimplementedMethod", &request);
        call.finish("error: Unimplemented");
        Err(Status::unimplemented(
            "UnimplementedMethod is not implemented",
        ))
    }
}
