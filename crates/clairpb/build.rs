//! Generates the Clair v3 gRPC code from the checked-in .proto files, with a vendored protoc so
//! no system protoc is needed.
//!
//! The service is served under two package names (`coreos.clair` and the older `clairpb`). The
//! messages are generated once, from `coreos_clair.proto`; `clairpb.proto` contributes only its
//! service, whose messages are mapped onto the same Rust types (`extern_path`), so one
//! implementation serves both.
use std::path::Path;

fn body(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with("//") && !l.starts_with("package "))
        .map(str::to_string)
        .collect())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new("proto");
    let (current, old) = (dir.join("coreos_clair.proto"), dir.join("clairpb.proto"));
    println!("cargo:rerun-if-changed={}", current.display());
    println!("cargo:rerun-if-changed={}", old.display());
    if body(&current)? != body(&old)? {
        return Err(format!(
            "{} and {} must be identical apart from comments and the package line",
            current.display(),
            old.display()
        )
        .into());
    }
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let config = || {
        let mut c = tonic_prost_build::Config::new();
        c.protoc_executable(&protoc);
        c
    };
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_with_config(config(), &[current], &[dir.to_path_buf(), include.clone()])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .extern_path(".clairpb", "crate::coreos::clair")
        .compile_with_config(config(), &[old], &[dir.to_path_buf(), include])?;
    Ok(())
}
