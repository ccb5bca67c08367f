//! Python packages the tests run (aiosmtpd for tests/send.rs, kubernetes-validate for
//! tests/kubernetes.rs), installed by the tests themselves when the machine's python3 lacks
//! them.
//!
//! `cargo test` needs only python3 with pip: a package the machine's Python does not import is
//! installed once under the target folder (`target/test-python/pip-NAME`, so `cargo clean`
//! removes it), and the tests run python3 with `PYTHONPATH` pointing there. The including file
//! declares `mod support;` too: the waits here use its deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{DEADLINE, output_within, wait_within};

/// A package a test needs.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// What pip installs: a name, pinned where the tests depend on what a version ships
    /// (`kubernetes-validate==1.37.0`).
    pub pip: &'static str,
    /// Python that succeeds only when the package is usable (`import aiosmtpd.smtp`).
    pub check: &'static str,
    /// What to tell someone whose machine cannot run it.
    pub needs: &'static str,
}

impl Package {
    /// The pip name without its version pin: the install folder's name.
    fn name(&self) -> &'static str {
        self.pip
            .split(['=', '<', '>', '~', '!', '['])
            .next()
            .unwrap_or(self.pip)
    }
}

/// Where the tests' packages are installed: in the target folder, shared by every test binary
/// of the build.
fn install_root() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target folder")
        .join("test-python")
}

/// python3 with no standard input.
pub fn python3() -> Command {
    let mut command = Command::new("python3");
    command.stdin(Stdio::null());
    command
}

/// `PYTHONPATH` with `dir` first, then the caller's.
pub fn python_path(dir: &Path) -> OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(caller) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&caller));
    }
    std::env::join_paths(paths).unwrap()
}

/// Whether python3 runs the package's check with `dir` on its path.
fn usable(package: &Package, dir: &Path) -> bool {
    output_within(
        python3()
            .args(["-c", package.check])
            .env("PYTHONPATH", python_path(dir)),
        DEADLINE,
    )
    .status
    .success()
}

/// The folder to put on `PYTHONPATH` for `package`, where it is installed when the machine's
/// Python lacks it. Test binaries running side by side install it once between them (a lock
/// file), and later runs find it there. Callers keep the answer in a `OnceLock`: it is worked
/// out once a test binary.
pub fn package_path(package: &Package) -> PathBuf {
    let needs = package.needs;
    // A missing python3 is said plainly, not as a failed spawn.
    match python3()
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            wait_within(&mut child, DEADLINE);
        }
        Err(e) => panic!("python3 does not run ({e}); {needs}"),
    }
    let root = install_root();
    // A hyphen cannot start a Python module's name, so no package installed into the folder
    // itself (as earlier versions of these tests did) is mistaken for this one's folder.
    let dir = root.join(format!("pip-{}", package.name()));
    if usable(package, &dir) {
        return dir;
    }
    std::fs::create_dir_all(&root).unwrap();
    let lock = std::fs::File::create(root.join(format!("pip-{}.lock", package.name()))).unwrap();
    fs4::fs_std::FileExt::lock_exclusive(&lock).unwrap();
    // Another test binary may have installed it while this one waited for the lock.
    if usable(package, &dir) {
        return dir;
    }
    // Installed beside, then renamed: a run killed halfway leaves no half-installed folder
    // that the check above would take for a broken Python.
    let partial = root.join(format!(
        "pip-{}.{}.partial",
        package.name(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&partial);
    let output = output_within(
        python3()
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-input", "--target"])
            .arg(&partial)
            .arg(package.pip),
        DEADLINE,
    );
    assert!(
        output.status.success(),
        "python3 -m pip install --target {} {} failed: {}; {needs}",
        partial.display(),
        package.pip,
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir).unwrap();
    assert!(
        usable(package, &dir),
        "{} was installed in {} but python3 does not run `{}` from there; {needs}",
        package.pip,
        dir.display(),
        package.check
    );
    dir
}
