//! The companion library's soname follows the crate's semver like libcpupolicy's:
//! `libcpupolicy-xc.so.0.1` for 0.1.z, `libcpupolicy-xc.so.N` from 1.0 on. The file cargo
//! builds is `libcpupolicy_xc.so`; `cargo xtask install` installs it under the soname's stem.

fn main() {
    let major: u64 = std::env::var("CARGO_PKG_VERSION_MAJOR").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let soname =
        if major == 0 { format!("libcpupolicy-xc.so.0.{minor}") } else { format!("libcpupolicy-xc.so.{major}") };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    println!("cargo:rerun-if-changed=build.rs");
}
