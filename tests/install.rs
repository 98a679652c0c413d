//! `scripts/install.sh` installs what a C or C++ developer builds against: this installs
//! into a temporary prefix and builds the C and C++ quick starts with pkg-config and with
//! CMake (`find_package(presence)`), then runs them.
//!
//! Needs gcc, g++, pkg-config, cmake and readelf; without them it is skipped loudly, naming
//! the packages, or fails with `CI=true`.
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command`, panicking with its output unless it succeeds; answers its stdout.
fn run(what: &str, command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs a built example and checks it printed something and exited 0.
fn run_example(what: &str, binary: &Path, library_path: Option<&Path>) {
    let mut command = Command::new(binary);
    if let Some(dir) = library_path {
        command.env("LD_LIBRARY_PATH", dir);
    }
    let out = run(what, &mut command);
    assert!(!out.trim().is_empty(), "{what} printed nothing");
}

#[test]
fn installed_library_builds_the_quick_starts_with_pkg_config_and_cmake() {
    let needed = [
        ("gcc", "gcc"),
        ("g++", "g++"),
        ("pkg-config", "pkg-config"),
        ("cmake", "cmake"),
        ("readelf", "binutils"),
    ];
    if !tools::present("the install test", &needed) {
        return;
    }
    let work = tempfile::tempdir().expect("a temporary folder");
    let prefix = work.path().join("prefix");
    run(
        "scripts/install.sh",
        Command::new("bash")
            .arg(root().join("scripts/install.sh"))
            .arg("--prefix")
            .arg(&prefix)
            .current_dir(root()),
    );
    installed_files_carry_the_soname(&prefix.join("lib"));
    installed_libraries_carry_no_debug_info(&prefix.join("lib"));
    quick_starts_build_with_pkg_config(work.path(), &prefix.join("lib"));
    quick_starts_build_with_cmake(work.path(), &prefix);
}

/// The versioned shared library names its SONAME; the links, the static library and the
/// CMake package are there.
fn installed_files_carry_the_soname(lib: &Path) {
    let version = env!("CARGO_PKG_VERSION");
    let dynamic =
        run("readelf", Command::new("readelf").arg("-d").arg(lib.join(format!("libpresence.so.{version}"))));
    assert!(dynamic.contains("Library soname: [libpresence.so.0]"), "{dynamic}");
    for link in ["libpresence.so", "libpresence.so.0", "libpresence.a", "cmake/presence/presenceConfig.cmake"]
    {
        assert!(lib.join(link).exists(), "{link} is not installed");
    }
}

/// Release artifacts ship without debug info: no `.debug_*` section in the shared library
/// or in any member of the static one.
fn installed_libraries_carry_no_debug_info(lib: &Path) {
    let version = env!("CARGO_PKG_VERSION");
    for file in [format!("libpresence.so.{version}"), "libpresence.a".to_owned()] {
        let sections = run("readelf", Command::new("readelf").arg("-S").arg("-W").arg(lib.join(&file)));
        let debug = sections.lines().filter(|l| l.contains(".debug_")).count();
        assert_eq!(debug, 0, "{file} has {debug} debug sections");
    }
}

/// pkg-config, shared library, found at run time through LD_LIBRARY_PATH.
fn quick_starts_build_with_pkg_config(work: &Path, lib: &Path) {
    let pc = |args: &[&str]| -> Vec<String> {
        let mut command = Command::new("pkg-config");
        command.args(args).arg("presence").env("PKG_CONFIG_PATH", lib.join("pkgconfig"));
        run("pkg-config", &mut command).split_whitespace().map(String::from).collect()
    };
    assert_eq!(pc(&["--modversion"]), [env!("CARGO_PKG_VERSION")]);
    let flags = pc(&["--cflags", "--libs"]);
    for (compiler, std, source, name) in [
        ("gcc", "-std=c11", "examples/c/quickstart.c", "quickstart-c"),
        ("g++", "-std=c++17", "examples/cpp/quickstart.cpp", "quickstart-cpp"),
    ] {
        let binary = work.join(name);
        run(
            &format!("{compiler} {source} with pkg-config"),
            Command::new(compiler)
                .args([std, "-Wall", "-Wextra", "-Werror"])
                .arg(root().join(source))
                .args(&flags)
                .arg("-o")
                .arg(&binary),
        );
        run_example(name, &binary, Some(lib));
    }
}

/// CMake: find_package(presence) and its imported targets (shared and static); the
/// shared one runs without LD_LIBRARY_PATH (CMake records the library's folder).
fn quick_starts_build_with_cmake(work: &Path, prefix: &Path) {
    let build = work.join("cmake-build");
    run(
        "cmake configure",
        Command::new("cmake")
            .arg("-S")
            .arg(root().join("examples/cmake"))
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())),
    );
    run("cmake build", Command::new("cmake").arg("--build").arg(&build));
    for name in ["quickstart_c", "quickstart_cpp", "quickstart_c_static"] {
        run_example(name, &build.join(name), None);
    }
    let dynamic = run("readelf", Command::new("readelf").arg("-d").arg(build.join("quickstart_c")));
    assert!(dynamic.contains("Shared library: [libpresence.so.0]"), "{dynamic}");
    let dynamic = run("readelf", Command::new("readelf").arg("-d").arg(build.join("quickstart_c_static")));
    assert!(!dynamic.contains("libpresence"), "{dynamic}");
}
