//! Compiles the subset of etcd's API that `quarry bench lock --target etcd` drives
//! (proto/etcd/*.proto) with protox: no system `protoc` is needed, unlike the
//! `etcd-client` crate's build script.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/etcd/rpc.proto", "proto/etcd/v3lock.proto"];
    let fds = protox::compile(protos, ["proto/etcd"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
