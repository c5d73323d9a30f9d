//! Generates the Satellite protocol types from `proto/satellite.proto` with protox (a protobuf
//! compiler in Rust, so no `protoc` on the machine) and prost-build, and keeps the compiled
//! descriptor set for the dynamic (dict) form of messages.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let proto_dir = root.join("../../proto");
    let proto = proto_dir.join("satellite.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    let fds = protox::compile([&proto], [&proto_dir]).unwrap_or_else(|e| panic!("{e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("out dir"));
    std::fs::write(
        out.join("satellite.fds.bin"),
        prost::Message::encode_to_vec(&fds),
    )
    .expect("write descriptor set");

    prost_build::Config::new()
        .enable_type_names()
        .compile_fds(fds)
        .expect("generate Satellite types");
}
