//! Compiles the gRPC interop protos under `proto/` with protox (a protobuf compiler in pure
//! Rust, so no `protoc` binary is needed) and generates the tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "grpc/testing/empty.proto",
        "grpc/testing/messages.proto",
        "grpc/testing/test.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed=proto/{file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
