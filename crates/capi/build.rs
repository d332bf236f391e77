//! Gives the shared library a soname that follows the crate's semver: `libcpupolicy.so.0.1` for
//! 0.1.z (0.x releases may break at each minor), `libcpupolicy.so.N` from 1.0 on.

fn main() {
    let major: u64 = std::env::var("CARGO_PKG_VERSION_MAJOR").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let soname = if major == 0 { format!("libcpupolicy.so.0.{minor}") } else { format!("libcpupolicy.so.{major}") };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    println!("cargo:rerun-if-changed=build.rs");
}
