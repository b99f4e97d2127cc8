//! Three hops, each printing the budget it saw: an axum edge calls a tonic "risk" service, which
//! calls a tonic "ledger" service. Budgets travel as `grpc-timeout` / `x-deadline-ms`; every
//! call gets `remaining − 150 ms`, and a call that would get less than 50 ms is not made.
//!
//! ```sh
//! cargo run -p timefuse-interop --example chain
//! ```

use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::routing::post;
use timefuse::Context;
use timefuse_interop::pb::test_service_client::TestServiceClient;
use timefuse_interop::pb::test_service_server::{TestService, TestServiceServer};
use timefuse_interop::pb::{
    Empty, SimpleRequest, SimpleResponse, StreamingInputCallRequest, StreamingInputCallResponse,
    StreamingOutputCallRequest,
};
use timefuse_interop::{CallLog, ResponseStream, SLEEP_MS_KEY};
use timefuse_tower::{EgressLayer, IngressLayer};
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status, Streaming};
use tower::ServiceBuilder;

type Client = TestServiceClient<timefuse_tower::egress::Egress<Channel>>;

fn ms(d: Option<Duration>) -> String {
    d.map_or("none".into(), |d| format!("{} ms", d.as_millis()))
}

/// The middle hop: spends 100 ms scoring, then asks the ledger.
struct Risk {
    ledger: Client,
}

#[tonic::async_trait]
impl TestService for Risk {
    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let ctx = Context::current();
        println!(
            "  [risk]   saw {} (request id {})",
            ms(ctx.remaining()),
            ctx.request_id().map_or("-", |i| i.as_str())
        );
        let scoring = ctx
            .stage("score")
            .map_err(|e| Status::deadline_exceeded(e.to_string()))?;
        scoring
            .run(tokio::time::sleep(Duration::from_millis(100)))
            .await
            .map_err(|c| Status::deadline_exceeded(c.to_string()))?;
        drop(scoring);
        let mut next = Request::new(request.into_inner());
        next.metadata_mut()
            .insert(SLEEP_MS_KEY, "40".parse().unwrap());
        let mut ledger = self.ledger.clone();
        ledger.unary_call(next).await
    }

    async fn empty_call(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("risk answers UnaryCall only"))
    }
    type StreamingOutputCallStream = ResponseStream;
    async fn streaming_output_call(
        &self,
        _: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<ResponseStream>, Status> {
        Err(Status::unimplemented("risk answers UnaryCall only"))
    }
    async fn streaming_input_call(
        &self,
        _: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        Err(Status::unimplemented("risk answers UnaryCall only"))
    }
    type FullDuplexCallStream = ResponseStream;
    async fn full_duplex_call(
        &self,
        _: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        Err(Status::unimplemented("risk answers UnaryCall only"))
    }
    type HalfDuplexCallStream = ResponseStream;
    async fn half_duplex_call(
        &self,
        _: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        Err(Status::unimplemented("risk answers UnaryCall only"))
    }
    async fn unimplemented_method(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("unimplemented"))
    }
}

async fn client(addr: std::net::SocketAddr) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    TestServiceClient::new(
        ServiceBuilder::new()
            .layer(EgressLayer::grpc())
            .service(channel),
    )
}

async fn order(Extension(risk): Extension<Client>) -> (StatusCode, String) {
    let ctx = Context::current();
    println!("  [edge]   saw {}", ms(ctx.remaining()));
    if ctx.should_degrade() {
        return (StatusCode::OK, "degraded: voucher issued at once".into());
    }
    let mut risk = risk.clone();
    match risk.unary_call(SimpleRequest::default()).await {
        Ok(_) => (StatusCode::OK, "paid".into()),
        Err(status) => (
            StatusCode::OK,
            format!("degraded: {:?} ({})", status.code(), status.message()),
        ),
    }
}

async fn bind() -> (tokio::net::TcpListener, std::net::SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

#[tokio::main]
async fn main() {
    // ledger: the interop TestService, which logs the deadline each call saw.
    let (ledger_l, ledger_addr) = bind().await;
    let log = CallLog::new();
    tokio::spawn(timefuse_interop::serve(ledger_l, log.clone()));

    // risk: a tonic service behind the ingress layer, calling the ledger through the egress layer.
    let (risk_l, risk_addr) = bind().await;
    let risk = Risk {
        ledger: client(ledger_addr).await,
    };
    tokio::spawn(
        Server::builder()
            .layer(IngressLayer::grpc())
            .add_service(TestServiceServer::new(risk))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(risk_l)),
    );

    // edge: axum behind the ingress layer, calling risk through the egress layer.
    let (edge_l, edge_addr) = bind().await;
    let app = Router::new()
        .route("/order", post(order))
        .layer(Extension(client(risk_addr).await))
        .layer(IngressLayer::http_edge());
    tokio::spawn(async move { axum::serve(edge_l, app).await.unwrap() });

    let http = reqwest::Client::new();
    for budget_ms in [1000, 420, 250] {
        println!("POST /order with x-deadline-ms: {budget_ms}");
        let res = http
            .post(format!("http://{edge_addr}/order"))
            .header("x-deadline-ms", budget_ms.to_string())
            .header("x-request-id", format!("order-{budget_ms}"))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await; // let the ledger's log settle
        for r in log
            .records()
            .iter()
            .filter(|r| r.request_id.as_deref() == Some(&format!("order-{budget_ms}")))
        {
            println!(
                "  [ledger] saw {} ms",
                r.remaining_ms.map_or("none".into(), |m| format!("{m:.0}"))
            );
        }
        println!("  => {status} {body}\n");
    }
}
