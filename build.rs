//! Compiles `proto/` with protox (pure Rust) and prost, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema = "proto/tickrelay/v1/tickrelay.proto";
    println!("cargo:rerun-if-changed={schema}");
    let descriptors = protox::compile([schema], ["proto"])?;
    prost_build::Config::new().bytes(["."]).compile_fds(descriptors)?;
    Ok(())
}
