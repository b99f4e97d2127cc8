//! `interop-server`: the gRPC interop `TestService` behind `timefuse_tower::IngressLayer`.
//!
//! ```text
//! interop-server [--port N]     (default: an ephemeral port on 127.0.0.1)
//! ```
//!
//! Prints `{"listening":"127.0.0.1:PORT"}` once bound, then one JSON line per finished call
//! (a `timefuse_interop::CallRecord`: the deadline the handler saw, its request id, and why
//! its context ended). Stops on Ctrl-C.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|v| v.parse::<u16>())) {
            ("--port", Some(Ok(p))) => port = p,
            _ => {
                eprintln!("usage: interop-server [--port N]");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("interop-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("{{\"listening\":\"{}\"}}", listener.local_addr()?);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        timefuse_interop::serve_with_shutdown(
            listener,
            timefuse_interop::CallLog::printing(),
            shutdown,
        )
        .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interop-server: {e}");
            ExitCode::FAILURE
        }
    }
}
