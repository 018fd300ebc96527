//! Regenerates `sluice-rpc`'s `src/generated` from its `proto/` with Debian's protoc, so that
//! building Sluice needs no protoc. Run by `scripts/gen-proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sluice-rpc");
    tonic_prost_build::configure()
        .out_dir(crate_dir.join("src/generated"))
        .compile_protos(&[crate_dir.join("proto/cluster.proto")], &[crate_dir.join("proto")])?;
    Ok(())
}
