//! Compiles the schema with protox (pure Rust) and prost, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema = "tickrelay/v1/tickrelay.proto";
    println!("cargo:rerun-if-changed={schema}");
    let descriptors = protox::compile([schema], ["."])?;
    prost_build::Config::new()
        .bytes(["."])
        .btree_map(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
