//! TEMPORARY: compiles the tablet server's proto for the client until `tablet::pb` exists.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["../tablet/proto/tablet.proto"];
    let fds = protox::compile(protos, ["../tablet/proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
