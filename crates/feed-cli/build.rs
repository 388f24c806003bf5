//! With the reference profile, gives the `feed` binary and its tests an
//! rpath to the libduckdb.so feed-duckdb links (see its build script).
fn main() {
    if let Some(dir) = std::env::var_os("DEP_FEED_DUCKDB_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.to_string_lossy());
    }
}
