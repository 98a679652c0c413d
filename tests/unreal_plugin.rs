//! Checks the Unreal plugin's files that no compiler here reads: `Presence.uplugin` is the
//! JSON Unreal expects and names a module whose `Build.cs` exists, and every library and
//! include path `Presence.Build.cs` links from is filled by `bindings/unreal/stage.sh`.
use std::path::{Path, PathBuf};
use std::process::Command;

fn plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bindings/unreal/Presence")
}

/// Every `"..."` literal on the lines of `text` that contain `needle`.
fn literals<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| line.contains(needle))
        .flat_map(|line| line.split('"').skip(1).step_by(2))
        .collect()
}

#[test]
fn uplugin_is_valid_and_names_its_module() {
    let text = std::fs::read_to_string(plugin().join("Presence.uplugin")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("Presence.uplugin is not JSON");
    assert_eq!(manifest["FileVersion"], 3, "Unreal 4.x/5.x plugins use FileVersion 3");
    for key in ["FriendlyName", "VersionName", "Description", "Category"] {
        assert!(manifest[key].is_string(), "Presence.uplugin lacks {key}");
    }
    let modules = manifest["Modules"].as_array().expect("Modules is an array");
    assert_eq!(modules.len(), 1);
    let module = &modules[0];
    assert_eq!(module["Type"], "Runtime");
    assert_eq!(module["LoadingPhase"], "Default");
    let name = module["Name"].as_str().expect("module Name");
    let build_cs = plugin().join(format!("Source/{name}/{name}.Build.cs"));
    let rules = std::fs::read_to_string(&build_cs).unwrap_or_else(|e| panic!("{} ({e})", build_cs.display()));
    assert!(rules.contains(&format!("public class {name} : ModuleRules")), "Build.cs class must be {name}");
    assert!(rules.contains(&format!("public {name}(ReadOnlyTargetRules Target)")));
    for dir in ["Public", "Private"] {
        assert!(plugin().join(format!("Source/{name}/{dir}")).is_dir(), "Source/{name}/{dir} missing");
    }
    let platforms: Vec<&str> =
        module["PlatformAllowList"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    for platform in &platforms {
        assert!(
            rules.contains(&format!("UnrealTargetPlatform.{platform}")),
            "Build.cs does not link a library for {platform}"
        );
    }
}

#[test]
fn build_cs_paths_are_what_staging_fills() {
    let rules = std::fs::read_to_string(plugin().join("Source/Presence/Presence.Build.cs")).unwrap();
    let include_dir = literals(&rules, "const string IncludeDir")[0];
    let lib_dir = literals(&rules, "const string LibDir")[0];
    let libraries = literals(&rules, "Lib = \"");
    assert_eq!(libraries.len(), 5, "one library per platform: {libraries:?}");

    // Stage into a copy of the plugin, naming every platform's library (this machine's
    // static library stands in for the others: the check is about paths).
    let staged = tempfile::tempdir().unwrap();
    let copy = staged.path().join("Presence");
    std::fs::create_dir_all(&copy).unwrap();
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/libpresence.a");
    assert!(lib.exists(), "{} is missing: run cargo build --release first", lib.display());
    let mut pairs = Vec::new();
    for library in &libraries {
        let (platform, file) = library.rsplit_once('/').unwrap();
        let source = staged.path().join(file);
        std::fs::copy(&lib, &source).unwrap();
        pairs.push(format!("{platform}={}", source.display()));
    }
    let status = Command::new("bash")
        .arg(plugin().parent().unwrap().join("stage.sh"))
        .arg(&copy)
        .args(&pairs)
        .status()
        .expect("run stage.sh");
    assert!(status.success(), "stage.sh failed");
    for header in ["presence.h", "presence.hpp"] {
        assert!(copy.join(include_dir).join(header).is_file(), "{include_dir}/{header} not staged");
    }
    for library in &libraries {
        assert!(copy.join(lib_dir).join(library).is_file(), "{lib_dir}/{library} not staged");
    }
    // Every quoted include of the module resolves: to the module's own headers, the staged
    // ones, a header Unreal's tool generates, or the Unreal headers named here.
    const UNREAL: [&str; 4] =
        ["CoreMinimal.h", "Subsystems/GameInstanceSubsystem.h", "Tickable.h", "Modules/ModuleManager.h"];
    let source = plugin().join("Source/Presence");
    for dir in ["Public", "Private"] {
        for entry in std::fs::read_dir(source.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for include in literals(&text, "#include \"") {
                let found = UNREAL.contains(&include)
                    || include.ends_with(".generated.h")
                    || source.join("Public").join(include).is_file()
                    || copy.join(include_dir).join(include).is_file();
                assert!(found, "{} includes {include}, which nothing provides", path.display());
            }
        }
    }
}
