//! Records the commit the binary was built from, for `ferrobase --version` and `/v1/health`:
//! `FB_BUILD_COMMIT` if set (builds from a source archive; not `FERROBASE_*`: `cargo run` hands
//! build-script variables to the process, and the server refuses unknown `FERROBASE_*` settings),
//! else `git rev-parse`, else "unknown". A tree with uncommitted changes is marked `-dirty`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=FB_BUILD_COMMIT");
    // Rebuild when HEAD moves (a commit, a checkout) or the index changes (dirty state).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head_ref}");
        }
    }
    let commit = std::env::var("FB_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            Some(if dirty { format!("{hash}-dirty") } else { hash })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=FB_BUILD_COMMIT={commit}");
}
