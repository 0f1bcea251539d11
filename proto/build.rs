//! Compiles the schema with protox (pure Rust) and prost, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema = "tickrelay/v1/tickrelay.proto";
    println!("cargo:rerun-if-changed={schema}");
    let descriptors = protox::compile([schema], ["."])?;
    prost_build::Config::new()
        .bytes(["."])
        .btree_map(["."])
        // Inputs travel by value from the socket to the room: boxed, a relay's writes
        // (seven lists) do not make every intent (a few bytes) as large as they are.
        .boxed(".tickrelay.v1.Input.payload.writes")
        .compile_fds(descriptors)?;
    Ok(())
}
