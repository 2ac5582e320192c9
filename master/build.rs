//! Compiles `proto/master.proto` with protox (no system `protoc` needed).
//!
//! TODO(interim): also compiles the tablet server's client from `../tablet/proto` until the
//! `tablet` crate exports it as `tablet::pb`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/master.proto"];
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let tablet = "../tablet/proto/tablet.proto";
    let fds = protox::compile([tablet], ["../tablet/proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={tablet}");
    Ok(())
}
