//! Compiles `proto/payments.proto` with protox (a protobuf compiler in pure Rust, so no `protoc`
//! binary is needed) and generates the tonic client and server of the payment chain.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/payments.proto");
    let fds = protox::compile(["payments.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
