// The Presence runtime module: links the presence engine's static library for the target
// platform. bindings/unreal/stage.sh copies the headers and libraries to the paths below.
using System.IO;
using UnrealBuildTool;

public class Presence : ModuleRules
{
    // Relative to the plugin folder; tests/unreal_plugin.rs checks that staging fills them.
    const string IncludeDir = "Source/ThirdParty/PresenceLibrary/include";
    const string LibDir = "Source/ThirdParty/PresenceLibrary/lib";

    public Presence(ReadOnlyTargetRules Target) : base(Target)
    {
        PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;
        CppStandard = CppStandardVersion.Cpp17;
        // The module needs neither: presence.hpp answers presence::Result, never throws.
        bEnableExceptions = false;
        bUseRTTI = false;

        PublicDependencyModuleNames.AddRange(new string[] { "Core", "CoreUObject", "Engine" });
        PublicIncludePaths.Add(Path.Combine(PluginDirectory, IncludeDir));

        string Lib = null;
        if (Target.Platform == UnrealTargetPlatform.Win64)
        {
            Lib = "Win64/presence.lib";
            // What the Rust standard library needs on Windows.
            PublicSystemLibraries.AddRange(new string[] { "ws2_32.lib", "userenv.lib", "bcrypt.lib", "ntdll.lib", "advapi32.lib" });
        }
        else if (Target.Platform == UnrealTargetPlatform.Linux)
        {
            Lib = "Linux/libpresence.a";
            PublicSystemLibraries.AddRange(new string[] { "pthread", "dl", "m" });
        }
        else if (Target.Platform == UnrealTargetPlatform.Mac)
        {
            Lib = "Mac/libpresence.a";
        }
        else if (Target.Platform == UnrealTargetPlatform.IOS)
        {
            Lib = "IOS/libpresence.a";
        }
        else if (Target.Platform == UnrealTargetPlatform.Android)
        {
            Lib = "Android/arm64-v8a/libpresence.a";
            PublicSystemLibraries.AddRange(new string[] { "dl", "m" });
        }
        if (Lib == null)
        {
            throw new BuildException("Presence: no presence library for platform " + Target.Platform);
        }
        string LibPath = Path.Combine(PluginDirectory, LibDir, Lib);
        if (!File.Exists(LibPath))
        {
            throw new BuildException("Presence: " + LibPath + " is missing; run bindings/unreal/stage.sh");
        }
        PublicAdditionalLibraries.Add(LibPath);
    }
}
